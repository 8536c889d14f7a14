"""What one API process holds for its lifetime: settings, pool, registry, listeners."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from easyclaw.agents.submission import KnownUsers
from easyclaw.api.auth import Authenticator
from easyclaw.api.readiness import Readiness
from easyclaw.api.settings import ApiProcessSettings
from easyclaw.api.waiters import JobWaiters
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.wakeups import WorkerWakeUps


@dataclass(kw_only=True)
class ApiState:
    settings: ApiProcessSettings
    registry: JobTypeRegistry
    pool: AsyncPool
    waiters: JobWaiters
    readiness: Readiness
    authenticator: Authenticator
    http: httpx.AsyncClient
    users: KnownUsers
    wake_ups: WorkerWakeUps
