"""Outcomes PostgreSQL refuses never hold up the others.

A NUL character in a result or an error (a scraped page, a model's output, an
exception message) is stored as U+FFFD; an outcome the database refuses for
any other reason ends its job FAILED with the reason, and the rest of its
batch is recorded as it is.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.migrations import migrate
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome
from easyclaw.worker.completions import CompletionRecorder, FinishedAttempt, Recorded
from tests.support.databases import drop_database
from tests.support.jobtypes import POISON_RESULT
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.worker.helpers import USER, Conn, enqueue, get, registered_worker, wait_all_finished


@pytest.mark.slow
async def test_nul_in_a_result_or_an_error_does_not_hold_up_the_other_jobs(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    worker_processes.start(1)
    await registered_worker(conn, "test-worker-0")
    poison_result = await enqueue(conn, "POISON_RESULT", max_attempts=1)
    poison_error = await enqueue(conn, "POISON_ERROR", max_attempts=1)
    await queue.enqueue_many(
        conn, user_id=USER, type="ECHO", payloads=[{"message": f"echo {i}"} for i in range(20)]
    )
    counts = await wait_all_finished(conn, 22, timeout=10)
    assert counts == {"COMPLETED": 21, "FAILED": 1}
    stored = await get(conn, poison_result.id)
    assert stored.status is JobStatus.COMPLETED
    assert stored.result == {
        "text": "before\ufffdafter",
        "key\ufffd": 1,
        "items": ["\ufffd", {"deep": "a\ufffd"}],
    }
    failed = await get(conn, poison_error.id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == "the page held a NUL \ufffd byte"


# ---------------------------------------------------------------- refused outcomes


@pytest.fixture
def latin1_database(postgres: LocalPostgres) -> Iterator[str]:
    """A migrated database in LATIN1: it cannot store most of Unicode, so it refuses
    results that a UTF8 database would take (as legacy databases do)."""
    name = f"latin1_{os.getpid()}"
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        admin.execute(
            f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0".encode()
        )
    asyncio.run(migrate(postgres.url(name)))
    try:
        yield postgres.url(name)
    finally:
        drop_database(postgres, name)


@pytest.fixture
async def latin1_pool(latin1_database: str) -> AsyncIterator[AsyncPool]:
    pool = create_pool(make_settings(latin1_database), application_name="easyclaw-tests")
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


async def claim(pool: AsyncPool, count: int, worker_id: str) -> list[ClaimedJob]:
    async with pool.connection() as conn:
        await queue.ensure_user(conn, USER)
        await queue.enqueue_many(
            conn, user_id=USER, type="ECHO", payloads=[{"i": i} for i in range(count)]
        )
        return await queue.claim_jobs(
            conn, worker_id=worker_id, types=["ECHO"], limit=count, lease_seconds=60
        )


async def record(
    pool: AsyncPool, settings: Settings, worker_id: str, results: list[Any]
) -> Recorded:
    """Claim one job per result and record them through one recorder, as one batch."""
    jobs = await claim(pool, len(results), worker_id)
    recorded: Recorded = []
    recorder = CompletionRecorder(
        pool, worker_id=worker_id, settings=settings, on_recorded=recorded.extend
    )
    for job, result in zip(jobs, results, strict=True):
        recorder.submit(
            FinishedAttempt(
                job=job,
                job_type=POISON_RESULT,
                outcome=Outcome(
                    job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result=result
                ),
                duration_seconds=0.0,
            )
        )
    running = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(10):
            await recorder.wait_empty()
    finally:
        running.cancel()
    return recorded


async def test_an_outcome_the_database_refuses_fails_its_job_and_the_batch_is_recorded(
    latin1_database: str, latin1_pool: AsyncPool
) -> None:
    settings = make_settings(latin1_database)
    results: list[Any] = [{"i": i} for i in range(5)]
    results.insert(2, {"text": "日本語"})  # not in LATIN1
    recorded = await record(latin1_pool, settings, "refusal-test", results)

    assert sorted(str(status) for _, status in recorded) == ["COMPLETED"] * 5 + ["FAILED"]
    async with latin1_pool.connection() as conn:
        cursor = await conn.execute("SELECT status, result_payload, error FROM jobs ORDER BY id")
        rows = await cursor.fetchall()
    assert [status for status, _, _ in rows].count("COMPLETED") == 5
    [(status, result, error)] = [row for row in rows if row[0] != "COMPLETED"]
    assert status == "FAILED"
    assert result is None
    assert error.startswith("its outcome could not be stored: ")
    assert "latin" in error.lower()
