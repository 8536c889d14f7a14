"""Probes: /healthz (process alive), /readyz (database takes writes).

/metrics is not here: it has its own port (``easyclaw.api.metrics``).
"""

from __future__ import annotations

from fastapi import APIRouter

from easyclaw.api.deps import StateDep
from easyclaw.api.errors import ApiError
from easyclaw.api.schemas import ErrorPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorPublic}})
async def readyz(state: StateDep) -> dict[str, str]:
    """Ready when the database takes a write (a probe row, rolled back); else 503
    ``DATABASE_UNAVAILABLE`` or ``DATABASE_NOT_WRITABLE`` with the reason."""
    not_ready = await state.readiness.check()
    if not_ready is not None:
        raise ApiError(503, not_ready.code, not_ready.reason, headers={"Retry-After": "2"})
    return {"status": "ready"}
