"""Readiness: the API can serve when its database takes writes, not merely answers.

A database that answers reads but refuses every write (read-only after a
failover, a standby, a full disk) would otherwise keep the pod in the Service
while every submission fails. The probe writes a row in a transaction that is
rolled back; its result is kept for ``cache_seconds`` so that a flood of
``/readyz`` calls costs at most one probe per interval.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import psycopg

from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, is_unavailable, pooled
from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger

log = EventLogger("easyclaw.api")


@dataclass(frozen=True, kw_only=True)
class NotReady:
    code: str
    """``DATABASE_UNAVAILABLE`` (cannot reach it) or ``DATABASE_NOT_WRITABLE``."""
    reason: str


class Readiness:
    def __init__(self, pool: AsyncPool, *, cache_seconds: float = 1.0) -> None:
        self._pool = pool
        self._cache_seconds = cache_seconds
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._last: NotReady | None = None

    async def check(self) -> NotReady | None:
        """None when ready, else why not."""
        async with self._lock:
            if time.monotonic() - self._checked_at < self._cache_seconds:
                return self._last
            self._last = await self._probe()
            self._checked_at = time.monotonic()
            return self._last

    async def _probe(self) -> NotReady | None:
        try:
            async with pooled(self._pool) as conn:
                await queue.probe_write(conn)
        except Exception as error:
            refused = _server_error(error)
            if refused is not None:
                reason = (refused.diag.message_primary or str(refused)).splitlines()[0]
                log.warning("api.database_not_writable", sqlstate=refused.sqlstate, error=reason)
                return NotReady(
                    code="DATABASE_NOT_WRITABLE",
                    reason=f"the database refuses writes: {reason}",
                )
            if not is_unavailable(error):
                raise
            log.warning("api.db_unavailable", error=str(error) or type(error).__name__)
            return NotReady(
                code="DATABASE_UNAVAILABLE", reason="the database is not reachable right now"
            )
        return None


def _server_error(error: BaseException) -> psycopg.Error | None:
    """The error the server sent (it has an SQLSTATE), if that is what this is;
    connection failures and pool timeouts have none."""
    cause = error.__cause__ if isinstance(error, DatabaseUnavailableError) else error
    if isinstance(cause, psycopg.Error) and cause.sqlstate is not None:
        return cause
    return None
