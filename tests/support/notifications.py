"""Hearing easyclaw_jobs_ready as a worker would, in commit order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[Any]
MARKER = "marker"


@contextlib.asynccontextmanager
async def listening(database_url: str) -> AsyncIterator[Conn]:
    """A session that LISTENs on easyclaw_jobs_ready."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN easyclaw_jobs_ready")
        yield listener


async def heard_until_marker(listener: Conn, conn: Conn) -> list[str]:
    """The payloads heard, up to a marker ``conn`` sends now: notifications arrive
    in commit order, so whatever an earlier commit sent comes before it."""
    await conn.execute(f"NOTIFY easyclaw_jobs_ready, '{MARKER}'")
    return (await heard_until(listener, MARKER))[:-1]


async def heard_until(listener: Conn, payload: str, timeout: float = 10) -> list[str]:
    """The payloads heard, up to and including the first ``payload``."""
    heard = []
    async with asyncio.timeout(timeout):
        async for notify in listener.notifies():
            heard.append(notify.payload)
            if notify.payload == payload:
                return heard
    raise AssertionError("the notification stream ended")
