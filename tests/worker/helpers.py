"""Helpers for the worker tests: an in-process worker, job shortcuts, log parsing.

In-process tests run ``Worker.run()`` as a task on the test's event loop
against the test's own database; process tests use the ``worker_processes``
fixture of the top-level conftest (real ``easyclaw worker`` subprocesses).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.models import Job, JobStatus
from easyclaw.worker.runner import Worker
from tests.support.waiting import wait_for

Conn = psycopg.AsyncConnection[Any]
USER = "worker-tests"


# ---------------------------------------------------------------- jobs


async def enqueue(
    conn: Conn, type: str, payload: dict[str, Any] | None = None, **kwargs: Any
) -> Job:
    """Enqueue one job for the test user (created on first use)."""
    await queue.ensure_user(conn, USER)
    enqueued = await queue.enqueue(conn, user_id=USER, type=type, payload=payload or {}, **kwargs)
    return enqueued.job


async def get(conn: Conn, job_id: UUID) -> Job:
    job = await queue.get_job(conn, job_id, user_id=None)
    assert job is not None, f"job {job_id} does not exist"
    return job


async def wait_status(conn: Conn, job_id: UUID, *statuses: JobStatus, timeout: float = 15.0) -> Job:
    """The job once it reaches one of ``statuses`` (polled with a deadline)."""

    async def reached() -> Job | None:
        job = await get(conn, job_id)
        return job if job.status in statuses else None

    try:
        job: Job = await wait_for(reached, timeout=timeout, interval=0.02)
    except TimeoutError:
        current = await get(conn, job_id)
        raise AssertionError(
            f"job {job_id} is {current.status} (attempts={current.attempts}, "
            f"error={current.error!r}), not {'/'.join(statuses)} after {timeout} s"
        ) from None
    return job


async def db_now(conn: Conn) -> Any:
    cursor = await conn.execute("SELECT clock_timestamp()")
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def fetch_all(conn: Conn, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(sql.encode(), params)
    return await cursor.fetchall()


async def fetch_value(conn: Conn, sql: str, params: Any = None) -> Any:
    cursor = await conn.execute(sql.encode(), params)
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def status_counts(conn: Conn) -> dict[str, int]:
    rows = await fetch_all(conn, "SELECT status, count(*) FROM jobs GROUP BY status")
    return {status: count for status, count in rows}


async def effects_per_job(conn: Conn) -> dict[UUID, int]:
    rows = await fetch_all(conn, "SELECT job_id, count(*) FROM job_effects GROUP BY job_id")
    return {job_id: count for job_id, count in rows}


# ---------------------------------------------------------------- in-process worker


@asynccontextmanager
async def running_worker(
    settings: Settings, pool: AsyncPool, registry: JobTypeRegistry | None = None
) -> AsyncIterator[Worker]:
    """A worker running on this event loop until the block ends; then a graceful stop.

    Yields once its listener is connected, so NOTIFY reaches it from then on.
    """
    worker = Worker(settings, registry or load_registry(settings), pool)
    task = asyncio.create_task(worker.run(), name=f"worker-{worker.worker_id}")
    try:
        async with asyncio.timeout(10):
            connected = asyncio.create_task(worker.listener.connected.wait())
            await asyncio.wait([connected, task], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                connected.cancel()
                task.result()  # surface the reason it stopped
        yield worker
    finally:
        worker.stop()
        try:
            async with asyncio.timeout(settings.worker_shutdown_grace_seconds + 10):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise AssertionError("the worker did not stop within its grace period") from None


def events(caplog: pytest.LogCaptureFixture, name: str, **fields: Any) -> list[dict[str, Any]]:
    """Fields of the captured log records of event ``name`` whose fields match ``fields``."""
    found = []
    for record in caplog.records:
        if record.getMessage() != name:
            continue
        values: dict[str, Any] = getattr(record, "easyclaw_fields", {})
        if all(values.get(key) == value for key, value in fields.items()):
            found.append(values)
    return found


# ---------------------------------------------------------------- process logs


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as a JSON object; a line that is not one fails the test."""
    parsed = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(value, dict), f"log line {number} is not a JSON object: {line!r}"
        parsed.append(value)
    return parsed


def log_events(text: str, name: str) -> list[dict[str, Any]]:
    return [line for line in parse_json_lines(text) if line.get("event") == name]


# ---------------------------------------------------------------- worker processes


async def registered_worker(conn: Conn, name: str, timeout: float = 30.0) -> str:
    """The id of the live worker process named ``name``, once its first heartbeat is in."""

    async def find() -> str | None:
        rows = await fetch_all(
            conn, "SELECT id FROM workers WHERE name = %s AND stopped_at IS NULL", (name,)
        )
        return rows[0][0] if rows else None

    worker_id: str = await wait_for(find, timeout=timeout, interval=0.05)
    return worker_id


async def wait_all_finished(conn: Conn, total: int, timeout: float) -> dict[str, int]:
    """Status counts once ``total`` jobs exist and none is PENDING or RUNNING."""

    async def finished() -> dict[str, int] | None:
        counts = await status_counts(conn)
        done = sum(counts.get(s, 0) for s in ("COMPLETED", "FAILED", "CANCELLED"))
        return counts if done == total and sum(counts.values()) == total else None

    try:
        counts: dict[str, int] = await wait_for(finished, timeout=timeout, interval=0.1)
    except TimeoutError:
        raise AssertionError(
            f"jobs not finished after {timeout} s: {await status_counts(conn)}"
        ) from None
    return counts
