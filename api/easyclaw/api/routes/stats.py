"""/stats: queue-wide counts (no user data), for `easyclaw stats` and dashboards."""

from __future__ import annotations

from fastapi import APIRouter

from easyclaw.api.deps import CurrentUser, StateDep
from easyclaw.api.schemas import ErrorPublic, StatsPublic
from easyclaw.core import queue
from easyclaw.core.db import pooled

router = APIRouter(tags=["stats"])


@router.get(
    "/stats",
    response_model=StatsPublic,
    responses={401: {"model": ErrorPublic}, 503: {"model": ErrorPublic}},
)
async def read_stats(_user_id: CurrentUser, state: StateDep) -> StatsPublic:
    async with pooled(state.pool) as conn:
        stats = await queue.queue_stats(
            conn, worker_alive_seconds=state.settings.worker_lease_seconds * 2
        )
    return StatsPublic.from_stats(stats)
