"""What every EasyClaw database session is told at connect (``connection_kwargs``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import psycopg_pool
import pytest

from easyclaw.core import queue
from easyclaw.core.db import create_pool, is_unavailable
from easyclaw.core.models import JobStatus, Outcome
from easyclaw.core.notifications import Listener
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

Conn = psycopg.AsyncConnection[Any]


async def test_a_stalled_completion_transaction_is_ended_so_its_lease_can_be_reaped(
    database_url: str, conn: Conn
) -> None:
    settings = make_settings(database_url, db_idle_in_transaction_timeout_ms=1000)
    await queue.ensure_user(conn, "stalled")
    job = (await queue.enqueue(conn, user_id="stalled", type="ECHO", payload={})).job
    [claimed] = await queue.claim_jobs(
        conn, worker_id="stalled-worker", types=["ECHO"], limit=1, lease_seconds=0.5
    )
    pool = create_pool(settings, application_name="easyclaw-worker", min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as session:
            # The worker began its completion transaction and then stopped (SIGSTOP,
            # a frozen node) before COMMIT: the job's row stays locked meanwhile.
            transaction = session.transaction()
            await transaction.__aenter__()
            accepted = await queue.finish_jobs(
                session,
                worker_id="stalled-worker",
                outcomes=[
                    Outcome(
                        job_id=job.id,
                        attempt=claimed.attempt,
                        status=JobStatus.COMPLETED,
                        result={},
                    )
                ],
            )
            assert accepted == {job.id: JobStatus.COMPLETED}
            # The lease expires; the reaper (SKIP LOCKED) can take the job back
            # only once the server has ended the stalled transaction.
            reaped = await wait_for(
                lambda: queue.reap_expired_leases(conn), timeout=10, interval=0.1
            )
            with pytest.raises(psycopg.Error, match="idle-in-transaction") as late_commit:
                await transaction.__aexit__(None, None, None)
            # To the process that wakes up, that is a connection lost mid-write.
            assert is_unavailable(late_commit.value)
    finally:
        await pool.close()
    assert [job.id for job in reaped] == [job.id]
    after = await queue.get_job(conn, job.id, user_id=None)
    assert after is not None
    assert after.status is JobStatus.PENDING
    assert after.result is None


async def test_listeners_use_the_session_url_and_pools_the_database_url(
    database_url: str, conn: Conn
) -> None:
    # Behind PgBouncer in transaction mode LISTEN must reach the server itself:
    # EASYCLAW_DATABASE_SESSION_URL. Here DATABASE_URL leads nowhere, so only a
    # listener that uses the session URL hears the notification.
    settings = make_settings(
        "postgresql://nobody@127.0.0.1:1/none", database_session_url=database_url
    )
    heard: list[str] = []
    listener = Listener(
        settings, {"easyclaw_test": heard.append}, application_name="easyclaw-test-listener"
    )
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        await conn.execute("NOTIFY easyclaw_test, 'hello'")
        await wait_for(lambda: heard, timeout=5)
        assert heard == ["hello"]
        pool = create_pool(settings, application_name="easyclaw-test", min_size=0, max_size=1)
        await pool.open(wait=False)
        try:
            with pytest.raises(psycopg_pool.PoolTimeout):
                async with pool.connection(timeout=1) as pooled_conn:
                    await pooled_conn.execute("SELECT 1")
        finally:
            await pool.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
