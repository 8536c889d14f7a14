"""What one API process holds for its lifetime: settings, pool, registry, listeners."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from easyclaw.api.auth import Authenticator
from easyclaw.api.waiters import JobWaiters
from easyclaw.core import queue
from easyclaw.core.db import AsyncConn, AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.settings import Settings


@dataclass(kw_only=True)
class KnownUsers:
    """User ids this process has already created, so POST /jobs skips the upsert."""

    free_credits: Decimal = Decimal(0)
    capacity: int = 100_000
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    async def ensure(self, conn: AsyncConn, user_id: str) -> None:
        if user_id in self._seen:
            self._seen.move_to_end(user_id)
            return
        await queue.ensure_user(conn, user_id, free_credits=self.free_credits)
        self._seen[user_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def forget(self, user_id: str) -> None:
        self._seen.pop(user_id, None)


@dataclass(kw_only=True)
class ApiState:
    settings: Settings
    registry: JobTypeRegistry
    pool: AsyncPool
    waiters: JobWaiters
    authenticator: Authenticator
    http: httpx.AsyncClient
    users: KnownUsers
