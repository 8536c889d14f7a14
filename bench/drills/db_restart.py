"""Database-restart drill: stop PostgreSQL while an API process takes jobs and
worker processes run them; start it again; count.

Promises checked: during the outage the API answers 503 quickly (no request
takes 5 s or more, no 5xx other than 503); the API and the workers recover by
themselves (same processes, nothing restarted); every job the API accepted
(201) completes, with its side effect exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from bench.drills.common import USER, Processes, Report, easyclaw_env, fetch_value, poll
from bench.drills.jobtypes import EFFECTS_TABLE
from easyclaw.cli.local_postgres import LocalPostgres, free_tcp_port
from easyclaw.core import queue

SLOW_SECONDS = 5.0


@dataclass(frozen=True)
class DbRestartDrill:
    workers: int = 2
    preloaded_jobs: int = 400
    outage_seconds: float = 15.0
    mode: str = "immediate"
    """How PostgreSQL stops: "immediate" is a crash, "fast" a clean shutdown."""
    after_seconds: float = 10.0
    job_seconds: float = 0.2


QUICK = DbRestartDrill(preloaded_jobs=60, outage_seconds=3.0, after_seconds=4.0)


@dataclass
class Requests:
    """Every request the client made: (started at, status or exception name, seconds)."""

    made: list[tuple[float, int | str, float]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[tuple[float, int | str, float]]:
        return [r for r in self.made if start <= r[0] < end]


async def submit_continuously(base_url: str, requests: Requests, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"x-user-id": USER}, timeout=30.0
    ) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await client.post(
                    "/jobs", json={"type": "DRILL_EFFECT", "payload": {"seconds": 0.05}}
                )
                outcome: int | str = response.status_code
                if response.status_code == 201:
                    requests.accepted.append(response.json()["jobId"])
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            requests.made.append((started, outcome, time.monotonic() - started))
            await asyncio.sleep(0.05)


async def run(server: LocalPostgres, url: str, drill: DbRestartDrill, log_dir: Path) -> Report:
    report = Report("db_restart")
    port = free_tcp_port()
    base_url = f"http://127.0.0.1:{port}"
    env = easyclaw_env(
        url,
        auth_mode="header",
        api_port=port,
        worker_lease_seconds=5,
        worker_heartbeat_interval_seconds=1,
        worker_maintenance_interval_seconds=1,
        log_level="WARNING",
    )
    api = Processes("api", env, log_dir)
    workers = Processes("worker", env, log_dir)
    requests = Requests()
    stop = asyncio.Event()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(EFFECTS_TABLE.encode())
        await queue.ensure_user(conn, USER)
    try:
        api_process = api.start("drill-api")
        worker_processes = [workers.start(f"drill-worker-{i}") for i in range(drill.workers)]
        async with httpx.AsyncClient(base_url=base_url) as probe:

            async def ready() -> bool:
                try:
                    return (await probe.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await poll(ready, timeout=60)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await poll(lambda: _live(conn, drill.workers), timeout=60, interval=0.05)
            await queue.enqueue_many(
                conn,
                user_id=USER,
                type="DRILL_EFFECT",
                payloads=[{"seconds": drill.job_seconds}] * drill.preloaded_jobs,
            )
        client = asyncio.create_task(submit_continuously(base_url, requests, stop))
        await asyncio.sleep(1.0)
        outage_start = time.monotonic()
        await asyncio.to_thread(server.stop, drill.mode)
        await asyncio.sleep(drill.outage_seconds)
        await asyncio.to_thread(server.start)
        outage_end = time.monotonic()
        await asyncio.sleep(drill.after_seconds)
        stop.set()
        await client
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            accepted = len(requests.accepted) + drill.preloaded_jobs

            async def all_done() -> bool:
                done = await fetch_value(
                    conn, "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'"
                )
                return bool(done >= accepted)

            with contextlib.suppress(TimeoutError):
                await poll(all_done, timeout=60)
            jobs = await fetch_value(conn, "SELECT count(*) FROM jobs")
            completed = await fetch_value(
                conn, "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'"
            )
            missing = await fetch_value(
                conn,
                "SELECT count(*) FROM unnest(%s::uuid[]) AS a(id) "
                "WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.id "
                "AND j.status = 'COMPLETED')",
                (requests.accepted,),
            )
            effect_rows = await fetch_value(conn, "SELECT count(*) FROM drill_effects")
            effect_jobs = await fetch_value(
                conn, "SELECT count(DISTINCT job_id) FROM drill_effects"
            )
        alive = api_process.poll() is None and all(p.poll() is None for p in worker_processes)
    finally:
        stop.set()
        await asyncio.to_thread(api.stop_all)
        await asyncio.to_thread(workers.stop_all)

    during = requests.between(outage_start, outage_end)
    after = requests.between(outage_end, float("inf"))
    first_ok = next((r[0] for r in after if r[1] == 201), None)
    slowest = max((r[2] for r in requests.made), default=0.0)
    statuses: dict[str, int] = {}
    for _, outcome, _ in during:
        statuses[str(outcome)] = statuses.get(str(outcome), 0) + 1
    report.counts = {
        "stop mode": drill.mode,
        "outage (s)": drill.outage_seconds,
        "requests during the outage, by status": statuses,
        "slowest request (s)": round(slowest, 2),
        "seconds from restart to the first 201": None
        if first_ok is None
        else round(first_ok - outage_end, 2),
        "jobs accepted (201 + preloaded)": accepted,
        "jobs in the table / COMPLETED": f"{jobs} / {completed}",
        "accepted jobs not COMPLETED": missing,
        "effect rows / distinct jobs": f"{effect_rows} / {effect_jobs}",
        "API and workers still the same processes": alive,
    }
    report.check(bool(during), "no request was made during the outage")
    report.check(
        set(statuses) <= {"201", "503"}, f"answers other than 201/503 during the outage: {statuses}"
    )
    report.check(statuses.get("503", 0) > 0, "the API never answered 503 during the outage")
    report.check(slowest < SLOW_SECONDS, f"a request took {slowest:.1f} s")
    report.check(first_ok is not None, "the API did not accept a job after the restart")
    report.check(missing == 0, f"{missing} accepted jobs did not complete")
    report.check(completed == jobs, f"{jobs - completed} jobs did not complete")
    report.check(effect_rows == effect_jobs == jobs, f"{effect_rows} effect rows for {jobs} jobs")
    report.check(alive, "the API or a worker exited")
    return report


async def _live(conn: psycopg.AsyncConnection[object], count: int) -> bool:
    live = await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL")
    return bool(live >= count)
