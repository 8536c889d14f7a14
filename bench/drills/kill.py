"""Kill drill: SIGKILL a random worker process every few seconds (and start it
again) while a batch of jobs runs; then count.

Promises checked: every job ends terminal (COMPLETED: jobs get enough
attempts to survive the kills), every job's side effect (a row written in its
completion transaction) exists exactly once and belongs to the accepted
attempt, and everything is done within lease + 30 s of the last kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.drills.common import (
    USER,
    Processes,
    Report,
    easyclaw_env,
    fetch_value,
    poll,
    status_counts,
)
from bench.drills.jobtypes import EFFECTS_TABLE
from easyclaw.core import queue


@dataclass(frozen=True)
class KillDrill:
    jobs: int = 5_000
    workers: int = 4
    kill_every_seconds: float = 2.0
    kill_for_seconds: float = 30.0
    job_seconds: tuple[float, float] = (0.1, 0.5)
    concurrency: int = 16
    lease_seconds: float = 10.0
    heartbeat_seconds: float = 2.0


QUICK = KillDrill(
    jobs=400,
    workers=3,
    kill_every_seconds=1.0,
    kill_for_seconds=5.0,
    job_seconds=(0.05, 0.3),
    lease_seconds=3.0,
    heartbeat_seconds=0.5,
)


async def run(url: str, drill: KillDrill, log_dir: Path) -> Report:
    report = Report("kill")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(EFFECTS_TABLE.encode())
        await queue.ensure_user(conn, USER)
        workers = Processes(
            "worker",
            easyclaw_env(
                url,
                worker_concurrency=drill.concurrency,
                worker_lease_seconds=drill.lease_seconds,
                worker_heartbeat_interval_seconds=drill.heartbeat_seconds,
                worker_maintenance_interval_seconds=min(1.0, drill.heartbeat_seconds),
                log_level="WARNING",
            ),
            log_dir,
        )
        slots = {index: workers.start(f"drill-worker-{index}") for index in range(drill.workers)}
        try:
            await poll(lambda: _live_at_least(conn, drill.workers), timeout=60, interval=0.05)
            low, high = drill.job_seconds
            await queue.enqueue_many(
                conn,
                user_id=USER,
                type="DRILL_EFFECT",
                payloads=[
                    {"seconds": round(random.uniform(low, high), 3)} for _ in range(drill.jobs)
                ],
                max_attempts=100,  # the drill kills often; the promise is about effects
            )
            started = time.monotonic()
            kills = 0
            killed_running = 0
            while time.monotonic() - started < drill.kill_for_seconds:
                await asyncio.sleep(drill.kill_every_seconds)
                if (
                    await fetch_value(
                        conn, "SELECT count(*) FROM jobs WHERE status IN ('PENDING', 'RUNNING')"
                    )
                    == 0
                ):
                    break
                index = random.randrange(drill.workers)
                victim = slots[index]
                running = await fetch_value(
                    conn,
                    "SELECT count(*) FROM jobs j JOIN workers w ON w.id = j.worker_id "
                    "WHERE j.status = 'RUNNING' AND w.name = %s AND w.stopped_at IS NULL",
                    (f"drill-worker-{index}",),
                )
                victim.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.wait)
                kills += 1
                killed_running += int(running or 0)
                slots[index] = workers.start(f"drill-worker-{index}")
            last_kill = time.monotonic()
            deadline = drill.lease_seconds + 30

            async def all_terminal() -> bool:
                counts = await status_counts(conn)
                return counts.get("PENDING", 0) + counts.get("RUNNING", 0) == 0

            with contextlib.suppress(TimeoutError):
                await poll(all_terminal, timeout=deadline + 60, interval=0.1)
            settle = time.monotonic() - last_kill
            counts = await status_counts(conn)
            effects = await fetch_value(conn, "SELECT count(*) FROM drill_effects")
            duplicates = await fetch_value(
                conn,
                "SELECT count(*) FROM (SELECT job_id FROM drill_effects GROUP BY job_id "
                "HAVING count(*) > 1) d",
            )
            missing = await fetch_value(
                conn,
                "SELECT count(*) FROM jobs j WHERE j.status = 'COMPLETED' AND NOT EXISTS "
                "(SELECT 1 FROM drill_effects e WHERE e.job_id = j.id)",
            )
            foreign = await fetch_value(
                conn,
                "SELECT count(*) FROM jobs j JOIN drill_effects e ON e.job_id = j.id "
                "WHERE e.worker_id <> j.worker_id OR e.attempt <> j.attempts",
            )
            retried = await fetch_value(conn, "SELECT count(*) FROM jobs WHERE attempts > 1")
            attempts = await fetch_value(conn, "SELECT coalesce(sum(attempts), 0) FROM jobs")
        finally:
            await asyncio.to_thread(workers.stop_all)
    report.counts = {
        "jobs": drill.jobs,
        "worker processes": drill.workers,
        "SIGKILLs": kills,
        "jobs running in the killed processes": killed_running,
        "statuses": counts,
        "attempts in all": attempts,
        "jobs that needed more than one attempt": retried,
        "effect rows": effects,
        "jobs with duplicate effects": duplicates,
        "completed jobs without an effect": missing,
        "effects not of the accepted attempt": foreign,
        "seconds from the last kill to all done": round(settle, 1),
    }
    report.check(kills > 0, "no worker was killed (the jobs finished too soon)")
    report.check(counts == {"COMPLETED": drill.jobs}, f"not every job COMPLETED: {counts}")
    report.check(effects == drill.jobs, f"{effects} effect rows for {drill.jobs} jobs")
    report.check(duplicates == 0, f"{duplicates} jobs have their effect twice")
    report.check(missing == 0, f"{missing} completed jobs have no effect")
    report.check(foreign == 0, f"{foreign} effects belong to an attempt that was not accepted")
    report.check(
        settle <= deadline,
        f"done {settle:.1f} s after the last kill (promise: lease + 30 = {deadline:g} s)",
    )
    return report


async def _live_at_least(conn: psycopg.AsyncConnection[object], count: int) -> bool:
    live = await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL")
    return bool(live >= count)
