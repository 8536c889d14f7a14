"""SIGTERM drill: stop every worker while long and short jobs run.

Promises checked: each worker exits 0 within its grace period (plus start-up
slack); jobs that fit in the grace period finish COMPLETED, the others are
handed back to PENDING without spending an attempt; none is left RUNNING;
a worker started afterwards picks the handed-back jobs up.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.drills.common import USER, Processes, Report, easyclaw_env, fetch_value, poll
from bench.drills.jobtypes import EFFECTS_TABLE
from easyclaw.core import queue


@dataclass(frozen=True)
class SigtermDrill:
    workers: int = 4
    short_jobs: int = 200
    long_jobs: int = 40
    grace_seconds: float = 5.0
    short_seconds: float = 1.0
    concurrency: int = 64


QUICK = SigtermDrill(workers=2, short_jobs=20, long_jobs=6, grace_seconds=2.0, short_seconds=0.5)


async def run(url: str, drill: SigtermDrill, log_dir: Path) -> Report:
    report = Report("sigterm")
    long_seconds = drill.grace_seconds * 10
    env = easyclaw_env(
        url,
        worker_concurrency=drill.concurrency,
        worker_shutdown_grace_seconds=drill.grace_seconds,
        worker_heartbeat_interval_seconds=1,
        worker_lease_seconds=10,
        log_level="WARNING",
    )
    workers = Processes("worker", env, log_dir)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(EFFECTS_TABLE.encode())
        await queue.ensure_user(conn, USER)
        try:
            processes = [workers.start(f"sigterm-worker-{i}") for i in range(drill.workers)]
            await poll(lambda: _live(conn, drill.workers), timeout=60, interval=0.05)
            total = drill.short_jobs + drill.long_jobs
            await queue.enqueue_many(
                conn,
                user_id=USER,
                type="DRILL_EFFECT",
                payloads=[{"seconds": drill.short_seconds}] * drill.short_jobs
                + [{"seconds": long_seconds}] * drill.long_jobs,
            )

            async def all_claimed() -> bool:
                pending = await fetch_value(
                    conn, "SELECT count(*) FROM jobs WHERE status = 'PENDING'"
                )
                return bool(pending == 0)

            await poll(all_claimed, timeout=30, interval=0.02)
            stopping = time.monotonic()
            for process in processes:
                process.send_signal(signal.SIGTERM)
            codes = [await asyncio.to_thread(p.wait, drill.grace_seconds + 30) for p in processes]
            stopped_after = time.monotonic() - stopping
            short_done = await fetch_value(
                conn,
                "SELECT count(*) FROM jobs WHERE status = 'COMPLETED' "
                "AND (input_payload->>'seconds')::float < %s",
                (drill.grace_seconds,),
            )
            handed_back = await fetch_value(
                conn,
                "SELECT count(*) FROM jobs WHERE status = 'PENDING' AND attempts = 0 "
                "AND worker_id IS NULL",
            )
            stuck = await fetch_value(conn, "SELECT count(*) FROM jobs WHERE status = 'RUNNING'")
            # A worker that comes afterwards takes the handed-back jobs at once.
            await conn.execute(
                "UPDATE jobs SET input_payload = '{\"seconds\": 0}' WHERE status = 'PENDING'"
            )
            workers.start("sigterm-worker-after")

            async def all_completed() -> bool:
                done = await fetch_value(
                    conn, "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'"
                )
                return bool(done == total)

            try:
                await poll(all_completed, timeout=30)
                completed_later = True
            except TimeoutError:
                completed_later = False
            effects = await fetch_value(
                conn, "SELECT count(*) FROM (SELECT DISTINCT job_id FROM drill_effects) e"
            )
            effect_rows = await fetch_value(conn, "SELECT count(*) FROM drill_effects")
        finally:
            await asyncio.to_thread(workers.stop_all)
    report.counts = {
        "worker processes": drill.workers,
        "grace period (s)": drill.grace_seconds,
        "short jobs (fit in the grace period)": drill.short_jobs,
        "long jobs": drill.long_jobs,
        "exit codes": codes,
        "seconds from SIGTERM to all exited": round(stopped_after, 1),
        "short jobs COMPLETED before exit": short_done,
        "jobs handed back to PENDING (attempt not spent)": handed_back,
        "jobs left RUNNING": stuck,
        "all completed by a later worker": completed_later,
        "effect rows / distinct jobs": f"{effect_rows} / {effects}",
    }
    report.check(all(code == 0 for code in codes), f"exit codes {codes}")
    report.check(
        stopped_after <= drill.grace_seconds + 5,
        f"workers took {stopped_after:.1f} s to stop (grace {drill.grace_seconds:g} s)",
    )
    report.check(short_done == drill.short_jobs, f"{short_done} short jobs completed")
    report.check(handed_back == drill.long_jobs, f"{handed_back} long jobs handed back")
    report.check(stuck == 0, f"{stuck} jobs left RUNNING")
    report.check(completed_later, "handed-back jobs were not completed by the next worker")
    report.check(effect_rows == effects == total, f"{effect_rows} effects for {total} jobs")
    return report


async def _live(conn: psycopg.AsyncConnection[object], count: int) -> bool:
    live = await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL")
    return bool(live >= count)
