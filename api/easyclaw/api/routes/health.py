"""Probes: /healthz (process alive), /readyz (database reachable).

/metrics is not here: it has its own port (``easyclaw.api.metrics``).
"""

from __future__ import annotations

from fastapi import APIRouter

from easyclaw.api.deps import StateDep
from easyclaw.api.schemas import ErrorPublic
from easyclaw.core.db import pooled

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorPublic}})
async def readyz(state: StateDep) -> dict[str, str]:
    async with pooled(state.pool) as conn:
        await conn.execute("SELECT 1")
    return {"status": "ready"}
