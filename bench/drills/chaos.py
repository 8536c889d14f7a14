"""Chaos drill: while a batch of jobs runs, SIGKILL or SIGSTOP (for longer than
the lease) a random worker process every few seconds, crash PostgreSQL once,
and mix poison jobs in with the ordinary ones; then count.

Poison jobs: ``DRILL_POISON_RESULT`` returns NUL characters (which PostgreSQL's
jsonb refuses unless they are replaced) and writes an effect like the others;
``DRILL_POISON_ERROR`` fails at once with a NUL in its error.

What it prints, each of which must be 0:

- jobs lost: submitted jobs missing from the table or not in their expected
  end state (``COMPLETED``; ``FAILED`` for ``DRILL_POISON_ERROR``);
- effects twice: jobs with more than one effect row (an effect is written in
  the completion transaction, so it exists if and only if that attempt's
  completion was accepted);
- effects missing or of an attempt that was not accepted;
- stuck jobs: still ``PENDING`` or ``RUNNING`` when the drill stops waiting;

and the recovery time: from the end of the last disruption (a SIGCONT, a
restart, PostgreSQL back) to every job finished, promised within lease + 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.drills.common import USER, Processes, Report, easyclaw_env, fetch_value, poll
from bench.drills.jobtypes import EFFECTS_TABLE
from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core import queue

EXPECTED_STATUS = {
    "DRILL_EFFECT": "COMPLETED",
    "DRILL_POISON_RESULT": "COMPLETED",
    "DRILL_POISON_ERROR": "FAILED",
}
WITH_EFFECT = ("DRILL_EFFECT", "DRILL_POISON_RESULT")


@dataclass(frozen=True)
class ChaosDrill:
    jobs: int = 5_000
    workers: int = 4
    chaos_seconds: float = 40.0
    event_every_seconds: float = 2.0
    pause_beyond_lease_seconds: float = 3.0
    """A SIGSTOP lasts the lease plus this, so the paused worker's leases expire."""
    outage_seconds: float = 10.0
    poison_every: int = 25
    """One job in this many is poison (results and errors alternate)."""
    job_seconds: tuple[float, float] = (0.1, 0.5)
    concurrency: int = 16
    lease_seconds: float = 10.0
    heartbeat_seconds: float = 2.0


QUICK = ChaosDrill(
    jobs=300,
    workers=3,
    concurrency=4,
    chaos_seconds=8.0,
    event_every_seconds=1.0,
    pause_beyond_lease_seconds=1.0,
    outage_seconds=2.0,
    poison_every=10,
    job_seconds=(0.1, 0.4),
    lease_seconds=3.0,
    heartbeat_seconds=0.5,
)


@dataclass
class Chaos:
    """The worker processes and what was done to them."""

    workers: Processes
    slots: dict[int, subprocess.Popen[bytes]]
    paused_until: dict[int, float] = field(default_factory=dict)
    kills: int = 0
    pauses: int = 0
    last_disruption_end: float = 0.0

    def kill(self, index: int) -> None:
        process = self.slots[index]
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.paused_until.pop(index, None)
        self.slots[index] = self.workers.start(f"chaos-worker-{index}")
        self.kills += 1
        self.last_disruption_end = time.monotonic()

    def pause(self, index: int, seconds: float) -> None:
        self.slots[index].send_signal(signal.SIGSTOP)
        self.paused_until[index] = time.monotonic() + seconds
        self.pauses += 1

    def resume_due(self, *, all_now: bool = False) -> None:
        now = time.monotonic()
        for index, until in list(self.paused_until.items()):
            if all_now or until <= now:
                self.slots[index].send_signal(signal.SIGCONT)
                del self.paused_until[index]
                self.last_disruption_end = time.monotonic()


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _unfinished(url: str) -> int | None:
    """Jobs still PENDING or RUNNING; None while the database cannot be reached."""
    try:
        async with await _connect(url) as conn:
            return int(
                await fetch_value(
                    conn, "SELECT count(*) FROM jobs WHERE status IN ('PENDING', 'RUNNING')"
                )
            )
    except psycopg.OperationalError:
        return None


async def _enqueue(conn: psycopg.AsyncConnection[Any], drill: ChaosDrill) -> dict[str, int]:
    """Ordinary and poison jobs interleaved, in claim order (one insert per run of a type)."""
    low, high = drill.job_seconds
    types = []
    for number in range(drill.jobs):
        if number % drill.poison_every == drill.poison_every - 1:
            poison = (number // drill.poison_every) % 2
            types.append(("DRILL_POISON_RESULT", "DRILL_POISON_ERROR")[poison])
        else:
            types.append("DRILL_EFFECT")
    for job_type, run in itertools.groupby(types):
        await queue.enqueue_many(
            conn,
            user_id=USER,
            type=job_type,
            payloads=[{"seconds": round(random.uniform(low, high), 3)} for _ in run],
            max_attempts=100,  # the drill kills often; the promises are about effects
        )
    return {job_type: types.count(job_type) for job_type in EXPECTED_STATUS}


async def run(server: LocalPostgres, url: str, drill: ChaosDrill, log_dir: Path) -> Report:
    report = Report("chaos")
    env = easyclaw_env(
        url,
        worker_concurrency=drill.concurrency,
        worker_lease_seconds=drill.lease_seconds,
        worker_heartbeat_interval_seconds=drill.heartbeat_seconds,
        worker_maintenance_interval_seconds=min(1.0, drill.heartbeat_seconds),
        # A worker paused inside a transaction must not hold its rows past the lease.
        db_idle_in_transaction_timeout_ms=int(drill.lease_seconds * 500),
        log_level="WARNING",
    )
    workers = Processes("worker", env, log_dir)
    async with await _connect(url) as conn:
        await conn.execute(EFFECTS_TABLE.encode())
        await queue.ensure_user(conn, USER)
    chaos = Chaos(workers, {i: workers.start(f"chaos-worker-{i}") for i in range(drill.workers)})
    crashed = False
    try:
        async with await _connect(url) as conn:
            await poll(lambda: _live_at_least(conn, drill.workers), timeout=60, interval=0.05)
            submitted = await _enqueue(conn, drill)
        started = time.monotonic()
        crash_at = started + drill.chaos_seconds / 3
        chaos.last_disruption_end = started
        while time.monotonic() - started < drill.chaos_seconds:
            await asyncio.sleep(drill.event_every_seconds)
            chaos.resume_due()
            if not crashed and time.monotonic() >= crash_at:
                await asyncio.to_thread(server.stop, "immediate")
                await asyncio.sleep(drill.outage_seconds)
                await asyncio.to_thread(server.start)
                crashed = True
                chaos.last_disruption_end = time.monotonic()
                continue
            if crashed and await _unfinished(url) == 0:
                break
            running = [i for i in chaos.slots if i not in chaos.paused_until]
            if not running:
                continue
            index = random.choice(running)
            if random.random() < 0.5:
                await asyncio.to_thread(chaos.kill, index)
            else:
                chaos.pause(index, drill.lease_seconds + drill.pause_beyond_lease_seconds)
        while chaos.paused_until:  # let every pause run its full length
            await asyncio.sleep(0.1)
            chaos.resume_due()
        deadline = drill.lease_seconds + 30

        async def all_finished() -> bool:
            return await _unfinished(url) == 0

        with contextlib.suppress(TimeoutError):
            await poll(all_finished, timeout=deadline + 60, interval=0.1)
        recovery = time.monotonic() - chaos.last_disruption_end
        async with await _connect(url) as conn:
            counts = await _count(conn)
        alive = all(process.poll() is None for process in chaos.slots.values())
    finally:
        chaos.resume_due(all_now=True)
        await asyncio.to_thread(workers.stop_all)

    lost = drill.jobs - counts["as expected"]
    report.counts = {
        "jobs": f"{drill.jobs} ({submitted['DRILL_POISON_RESULT']} return NUL, "
        f"{submitted['DRILL_POISON_ERROR']} fail with NUL)",
        "worker processes": drill.workers,
        "SIGKILLs": chaos.kills,
        f"SIGSTOPs (lease + {drill.pause_beyond_lease_seconds:g} s)": chaos.pauses,
        f"PostgreSQL crashes ({drill.outage_seconds:g} s)": int(crashed),
        "statuses": counts["statuses"],
        "jobs that needed more than one attempt": counts["retried"],
        "jobs lost": lost,
        "effects twice": counts["effects twice"],
        "effects missing": counts["effects missing"],
        "effects of an attempt not accepted": counts["foreign effects"],
        "stuck jobs": counts["stuck"],
        "NUL results stored as U+FFFD": counts["nul results"],
        "recovery: seconds from the last disruption to all done": round(recovery, 1),
    }
    report.check(chaos.kills > 0, "no worker was killed")
    report.check(chaos.pauses > 0, "no worker was paused")
    report.check(crashed, "PostgreSQL was not crashed (the jobs finished too soon)")
    report.check(lost == 0, f"{lost} jobs lost or not in their expected end state")
    report.check(counts["effects twice"] == 0, f"{counts['effects twice']} jobs have two effects")
    report.check(counts["effects missing"] == 0, f"{counts['effects missing']} effects missing")
    report.check(counts["foreign effects"] == 0, "effects of attempts that were not accepted")
    report.check(counts["stuck"] == 0, f"{counts['stuck']} jobs stuck PENDING or RUNNING")
    report.check(
        counts["nul results"] == submitted["DRILL_POISON_RESULT"],
        f"{counts['nul results']} NUL results stored as U+FFFD, "
        f"of {submitted['DRILL_POISON_RESULT']}",
    )
    report.check(
        recovery <= deadline,
        f"done {recovery:.1f} s after the last disruption (promise: lease + 30 = {deadline:g} s)",
    )
    report.check(alive, "a worker process exited by itself")
    return report


async def _count(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    cursor = await conn.execute(b"SELECT type, status, count(*) FROM jobs GROUP BY 1, 2")
    statuses: dict[str, dict[str, int]] = {}
    as_expected = stuck = 0
    for job_type, status, count in await cursor.fetchall():
        statuses.setdefault(job_type, {})[status] = count
        as_expected += count if EXPECTED_STATUS.get(job_type) == status else 0
        stuck += count if status in ("PENDING", "RUNNING") else 0
    return {
        "statuses": statuses,
        "as expected": as_expected,
        "stuck": stuck,
        "retried": await fetch_value(conn, "SELECT count(*) FROM jobs WHERE attempts > 1"),
        "effects twice": await fetch_value(
            conn,
            "SELECT count(*) FROM (SELECT job_id FROM drill_effects GROUP BY job_id "
            "HAVING count(*) > 1) d",
        ),
        "effects missing": await fetch_value(
            conn,
            "SELECT count(*) FROM jobs j WHERE j.type = ANY(%s) AND j.status = 'COMPLETED' "
            "AND NOT EXISTS (SELECT 1 FROM drill_effects e WHERE e.job_id = j.id)",
            (list(WITH_EFFECT),),
        ),
        "foreign effects": await fetch_value(
            conn,
            "SELECT count(*) FROM jobs j JOIN drill_effects e ON e.job_id = j.id "
            "WHERE e.worker_id <> j.worker_id OR e.attempt <> j.attempts "
            "OR j.status <> 'COMPLETED'",
        ),
        "nul results": await fetch_value(
            conn,
            "SELECT count(*) FROM jobs WHERE type = 'DRILL_POISON_RESULT' "
            "AND result_payload->>'text' = %s AND result_payload ? %s",
            ("a\ufffdb", "key\ufffd"),
        ),
    }


async def _live_at_least(conn: psycopg.AsyncConnection[Any], count: int) -> bool:
    live = await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL")
    return bool(live >= count)
