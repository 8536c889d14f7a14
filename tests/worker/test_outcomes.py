"""What a worker records for each way an attempt can end (in-process worker, real database).

A handler's return value completes the job; a retryable error schedules the
next attempt after an exponential backoff; a permanent error, an unexpected
exception, or running out of attempts fails the job; a timeout counts as a
retryable failure.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import Job, JobStatus
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import Conn, enqueue, events, get, running_worker, wait_status


async def test_echo_completes_with_its_payload_as_result(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    payload = {"text": "hello", "n": [1, 2, 3], "nested": {"ok": True}}
    async with running_worker(settings, pool) as worker:
        job = await enqueue(conn, "ECHO", payload)
        done = await wait_status(conn, job.id, JobStatus.COMPLETED)
    assert done.result == payload
    assert done.attempts == 1
    assert done.error is None
    assert done.worker_id == worker.worker_id
    assert done.lease_expires_at is None
    assert done.finished_at is not None
    assert done.started_at is not None
    assert done.finished_at >= done.started_at


async def test_retryable_failures_are_retried_after_a_growing_backoff(
    database_url: str, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    base = 0.4
    settings = make_settings(database_url, retry_base_seconds=base, retry_max_seconds=10.0)
    # Each failed attempt leaves the job PENDING, not before its backoff (run_at), for at
    # least base/2 seconds: long enough to observe every one by polling the row.
    waits: dict[int, Job] = {}

    async def observe_until_completed() -> Job | None:
        current = await get(conn, job.id)
        if current.status is JobStatus.PENDING and current.attempts > 0:
            waits.setdefault(current.attempts, current)
        return current if current.status is JobStatus.COMPLETED else None

    async with running_worker(settings, pool):
        job = await enqueue(conn, "FLAKY", {"succeed_on": 3}, max_attempts=5)
        done: Job = await wait_for(observe_until_completed, timeout=15, interval=0.01)

    assert done.attempts == 3
    assert done.result == {"attempt": 3}
    assert sorted(waits) == [1, 2], "each failed attempt should leave the job waiting"
    starts: dict[int, datetime] = {}
    for attempt, waiting in waits.items():
        assert waiting.error == f"transient failure on attempt {attempt}"
        assert waiting.worker_id is None
        assert waiting.started_at is not None
        starts[attempt] = waiting.started_at
        # Equal-jitter backoff: attempt n waits between half and all of base * 2^(n-1).
        ceiling = base * 2 ** (attempt - 1)
        delay = (waiting.run_at - waiting.updated_at).total_seconds()
        assert ceiling / 2 - 0.01 <= delay <= ceiling + 0.01, (attempt, delay)
    assert done.started_at is not None
    starts[3] = done.started_at
    for attempt in (1, 2):
        retry_at = waits[attempt].run_at
        next_start = starts[attempt + 1]
        # Never before its backoff, and promptly when it is due: the worker sleeps
        # until the next run_at rather than until its 5 s poll.
        lag = (next_start - retry_at).total_seconds()
        assert 0 <= lag < 0.5, f"attempt {attempt + 1} started {lag:.3f} s after it was due"
    retried = events(worker_logs, "job.retried", job_id=str(job.id))
    assert [record["attempt"] for record in retried] == [1, 2]


async def test_permanent_error_fails_at_once_with_its_reason(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "FAIL", {"reason": "the document is empty"}, max_attempts=5)
        failed = await wait_status(conn, job.id, JobStatus.FAILED)
    assert failed.attempts == 1
    assert failed.error == "the document is empty"
    assert failed.result is None


async def test_unexpected_exception_fails_at_once_naming_its_type(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "CRASH", max_attempts=5)
        failed = await wait_status(conn, job.id, JobStatus.FAILED)
    assert failed.attempts == 1
    assert failed.error == "ZeroDivisionError: handler bug"


async def test_retryable_error_on_the_last_attempt_fails_the_job(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "FLAKY", {"succeed_on": 99}, max_attempts=2)
        failed = await wait_status(conn, job.id, JobStatus.FAILED)
    assert failed.attempts == 2
    assert failed.error == "transient failure on attempt 2 (gave up after attempt 2 of 2)"


async def test_attempt_longer_than_its_timeout_is_stopped_and_fails(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "SLEEP", {"seconds": 5}, timeout_seconds=0.3, max_attempts=1)
        failed = await wait_status(conn, job.id, JobStatus.FAILED, timeout=4)
    assert failed.attempts == 1
    assert failed.error is not None
    assert "timed out after 0.3 s" in failed.error
    assert "gave up after attempt 1 of 1" in failed.error
    assert failed.started_at is not None
    assert failed.finished_at is not None
    ran_for = (failed.finished_at - failed.started_at).total_seconds()
    assert 0.3 <= ran_for < 2.0


async def test_timed_out_attempt_is_retried_when_attempts_remain(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "SLEEP", {"seconds": 5}, timeout_seconds=0.2, max_attempts=2)
        failed = await wait_status(conn, job.id, JobStatus.FAILED, timeout=8)
    assert failed.attempts == 2
    assert failed.error is not None
    assert "gave up after attempt 2 of 2" in failed.error


async def test_invalid_stored_payload_fails_without_retrying(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    job = await enqueue(conn, "ECHO", {"x": 1}, max_attempts=3)
    # Only a JSON object is a payload; a row edited by hand can still hold anything.
    await conn.execute("UPDATE jobs SET input_payload = '[1, 2]' WHERE id = %s", (job.id,))
    async with running_worker(settings, pool):
        failed = await wait_status(conn, job.id, JobStatus.FAILED)
    assert failed.attempts == 1
    assert failed.error is not None
    assert "payload must be a JSON object" in failed.error
