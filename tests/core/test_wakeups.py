"""Waking workers after the commit: an insert that leaves the wake-up to its
submitter sends no NOTIFY in its own transaction (every other insert still
does), and WorkerWakeUps sends one NOTIFY for any number of commits that
happened while the previous one was on its way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.wakeups import WorkerWakeUps
from tests.support.notifications import heard_until_marker, listening
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import events

Conn = psycopg.AsyncConnection[Any]
USER = "wake-ups"


async def test_an_insert_that_leaves_the_wake_up_to_its_submitter_notifies_nobody(
    database_url: str, conn: Conn
) -> None:
    await queue.ensure_user(conn, USER)
    async with listening(database_url) as listener:
        await queue.enqueue(conn, user_id=USER, type="ECHO", payload={}, wake_workers=False)
        assert await heard_until_marker(listener, conn) == []
        # Keyed submissions run in a transaction of their own: the same.
        await queue.enqueue(
            conn, user_id=USER, type="ECHO", payload={}, concurrency_key="k", wake_workers=False
        )
        assert await heard_until_marker(listener, conn) == []
        # The flag lasted only for those transactions: the next insert on the
        # same session, any client's (psql's, say), wakes the workers at commit.
        await conn.execute("INSERT INTO jobs (user_id, type) VALUES (%s, 'ECHO')", (USER,))
        assert await heard_until_marker(listener, conn) == ["inserted"]
        await queue.enqueue(conn, user_id=USER, type="ECHO", payload={})
        assert await heard_until_marker(listener, conn) == ["inserted"]


@contextlib.asynccontextmanager
async def sending(
    database_url: str, *, pool_timeout: float, max_backoff_seconds: float = 5.0
) -> AsyncIterator[tuple[AsyncPool, WorkerWakeUps]]:
    """WorkerWakeUps running on a pool of one connection, as busy as the test makes it."""
    settings = make_settings(database_url, db_pool_timeout_seconds=pool_timeout)
    pool = create_pool(settings, application_name="easyclaw-test", min_size=1, max_size=1)
    await pool.open(wait=True)
    wake_ups = WorkerWakeUps(pool, max_backoff_seconds=max_backoff_seconds)
    sender = asyncio.create_task(wake_ups.run())
    try:
        yield pool, wake_ups
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        await pool.close()


async def test_wake_ups_send_one_notify_for_the_commits_made_while_one_was_on_its_way(
    database_url: str, conn: Conn
) -> None:
    sender = sending(database_url, pool_timeout=10)
    async with sender as (pool, wake_ups), listening(database_url) as listener:
        async with pool.connection():
            # The one connection is busy (requests), so the first wake-up
            # waits for it; the 49 commits after it need one more, in all.
            for _ in range(50):
                wake_ups.soon()
                await asyncio.sleep(0)
        await wait_for(lambda: wake_ups.sent == 2, timeout=10)
        assert await heard_until_marker(listener, conn) == ["submitted", "submitted"]
        assert wake_ups.sent == 2
        wake_ups.soon()
        await wait_for(lambda: wake_ups.sent == 3, timeout=10)
        assert await heard_until_marker(listener, conn) == ["submitted"]


async def test_a_wake_up_the_database_refused_is_sent_again(
    database_url: str, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="easyclaw")
    sender = sending(database_url, pool_timeout=0.2, max_backoff_seconds=0.1)
    async with sender as (pool, wake_ups), listening(database_url) as listener:
        async with pool.connection():
            wake_ups.soon()  # no connection for it within the pool's timeout
            await wait_for(lambda: events(caplog, "wakeup.failed"), timeout=10)
        await wait_for(lambda: wake_ups.sent == 1, timeout=10)
        assert await heard_until_marker(listener, conn) == ["submitted"]
