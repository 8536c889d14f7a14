"""Worker processes ride out a PostgreSQL restart without being restarted themselves.

Each test runs its own embedded server (the session's one must stay up for
everybody else), stops it while jobs are running, starts it again, and
checks that every job still completes exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core import queue
from easyclaw.core.migrations import migrate
from tests.support.databases import FAST_UNSAFE_SETTINGS
from tests.support.jobtypes import JOB_EFFECTS_TABLE
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    effects_per_job,
    fetch_value,
    log_events,
    registered_worker,
    status_counts,
    wait_all_finished,
)

pytestmark = pytest.mark.slow

JOBS = 60
WORKERS = 2
LEASE_SECONDS = 5.0  # the settings fixture's lease
# fsync=off is safe against a server crash (only an OS crash loses data), but
# synchronous_commit=off would lose commits already acknowledged to the workers:
# that is a failover to a lagging replica, not a restart.
SERVER_SETTINGS = {**FAST_UNSAFE_SETTINGS, "synchronous_commit": "on"}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "pg", settings=SERVER_SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")


@pytest.fixture
async def own_database(own_postgres: LocalPostgres) -> str:
    url = own_postgres.url()
    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(JOB_EFFECTS_TABLE.encode())
        await queue.ensure_user(conn, USER)
    return url


@pytest.fixture
def own_workers(own_database: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    workers = WorkerProcesses(settings=make_settings(own_database), log_dir=log_dir)
    try:
        yield workers
    finally:
        workers.stop_all()


async def connect(url: str) -> Conn:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


def outage_seen_for(workers: WorkerProcesses, seconds: float) -> bool:
    """Whether every worker has been logging that the database is unavailable for ``seconds``."""
    for index in range(WORKERS):
        text = (workers.log_dir / f"worker-{index}.log").read_text()
        times = [line["ts"] for line in log_events(text, "worker.db_unavailable")]
        if not times or max(times) - min(times) < seconds:
            return False
    return True


@pytest.mark.parametrize(
    ("mode", "outage_seconds"),
    [
        ("fast", 0.0),
        ("immediate", 0.0),
        # Longer than a lease: running jobs are reaped after the restart, and the
        # worker pools have given up their first reconnection attempts.
        ("fast", LEASE_SECONDS + 1.0),
    ],
    ids=["fast", "immediate", "fast-outage-longer-than-lease"],
)
async def test_workers_reconnect_after_a_restart_and_lose_no_job(
    own_postgres: LocalPostgres,
    own_database: str,
    own_workers: WorkerProcesses,
    mode: str,
    outage_seconds: float,
) -> None:
    processes = own_workers.start(WORKERS, EASYCLAW_WORKER_CONCURRENCY="4")
    async with await connect(own_database) as conn:
        for index in range(WORKERS):
            await registered_worker(conn, f"test-worker-{index}")
        await queue.enqueue_many(
            conn,
            user_id=USER,
            type="EFFECT",
            payloads=[{"seconds": 0.25, "i": i} for i in range(JOBS)],
        )

        async def some_done_some_running() -> bool:
            counts = await status_counts(conn)
            return counts.get("COMPLETED", 0) >= 8 and counts.get("RUNNING", 0) > 0

        await wait_for(some_done_some_running, timeout=20)
    # "fast" ends every session and rolls back open transactions; "immediate" is a crash.
    own_postgres.stop(mode)

    await wait_for(
        lambda: outage_seen_for(own_workers, outage_seconds), timeout=outage_seconds + 15
    )
    assert all(process.poll() is None for process in processes), "a worker exited"
    own_postgres.start()

    async with await connect(own_database) as conn:
        counts = await wait_all_finished(conn, JOBS, timeout=60)
        assert counts == {"COMPLETED": JOBS}
        per_job = await effects_per_job(conn)
        assert len(per_job) == JOBS
        assert set(per_job.values()) == {1}
        # Each effect belongs to the attempt whose completion was accepted.
        mismatched = await fetch_value(
            conn,
            "SELECT count(*) FROM jobs j JOIN job_effects e ON e.job_id = j.id "
            "WHERE e.worker_id <> j.worker_id OR e.attempt <> j.attempts",
        )
        assert mismatched == 0
        # The same processes are still working: new jobs are picked up after the restart.
        await queue.enqueue_many(conn, user_id=USER, type="ECHO", payloads=[{"after": True}] * 10)
        counts = await wait_all_finished(conn, JOBS + 10, timeout=20)
        assert counts == {"COMPLETED": JOBS + 10}
        live = await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL")
        assert live == WORKERS
    assert all(process.poll() is None for process in processes), "a worker exited"
