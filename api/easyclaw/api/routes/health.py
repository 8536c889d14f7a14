"""Probes and metrics: /healthz (process alive), /readyz (database reachable), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from easyclaw.api.deps import StateDep
from easyclaw.api.schemas import ErrorPublic
from easyclaw.core import queue
from easyclaw.core.db import is_unavailable, pooled

router = APIRouter(tags=["health"])

QUEUE_JOBS = Gauge("easyclaw_queue_jobs", "Jobs in the queue by status", ["status"])
QUEUE_OLDEST_PENDING = Gauge(
    "easyclaw_queue_oldest_pending_age_seconds", "Age of the oldest ready PENDING job"
)
QUEUE_LIVE_WORKERS = Gauge("easyclaw_queue_live_workers", "Workers seen by heartbeat lately")
DATABASE_UP = Gauge("easyclaw_api_database_up", "1 if the last scrape could read the queue")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorPublic}})
async def readyz(state: StateDep) -> dict[str, str]:
    async with pooled(state.pool) as conn:
        await conn.execute("SELECT 1")
    return {"status": "ready"}


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format. Queue gauges are read from the database at scrape
    time; while it is unreachable the HTTP metrics are still served."""
    try:
        async with pooled(state.pool) as conn:
            stats = await queue.queue_stats(
                conn, worker_alive_seconds=state.settings.worker_lease_seconds * 2
            )
    except Exception as error:
        if not is_unavailable(error):
            raise
        DATABASE_UP.set(0)
    else:
        DATABASE_UP.set(1)
        for status in ("pending", "running", "completed", "failed", "cancelled"):
            QUEUE_JOBS.labels(status.upper()).set(getattr(stats, status))
        QUEUE_OLDEST_PENDING.set(stats.oldest_pending_age_seconds)
        QUEUE_LIVE_WORKERS.set(stats.live_workers)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
