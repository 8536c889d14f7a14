"""``/metrics`` on a port of its own (``EASYCLAW_API_METRICS_PORT``).

The API port faces users (through an Ingress, on EKS the internet); the
metrics, which are unauthenticated and query the database, must not. So they
are served by a separate listener that a Service may name for Prometheus and
that no Ingress routes to; the API port answers 404 for ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from easyclaw.api.state import ApiState
from easyclaw.core import queue
from easyclaw.core.db import is_unavailable, pooled
from easyclaw.core.probe_server import ProbeServer, Response

QUEUE_JOBS = Gauge("easyclaw_queue_jobs", "Jobs in the queue by status", ["status"])
QUEUE_OLDEST_PENDING = Gauge(
    "easyclaw_queue_oldest_pending_age_seconds", "Age of the oldest ready PENDING job"
)
QUEUE_LIVE_WORKERS = Gauge("easyclaw_queue_live_workers", "Workers seen by heartbeat lately")
DATABASE_UP = Gauge("easyclaw_api_database_up", "1 if the last scrape could read the queue")

_NOT_FOUND: Response = ("404 Not Found", "application/json", b'{"error":"NOT_FOUND"}')


async def render_metrics(state: ApiState) -> bytes:
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
    return generate_latest()


class MetricsServer(ProbeServer):
    """Serves ``GET /metrics`` and nothing else."""

    def __init__(self, state: ApiState) -> None:
        settings = state.settings
        # Every process of `easyclaw api --workers N` listens; a scrape reads one of them.
        super().__init__(
            settings.api_host, settings.api_metrics_port, self._answer, reuse_port=True
        )
        self._state = state

    async def _answer(self, path: str) -> Response:
        if path != "/metrics":
            return _NOT_FOUND
        return ("200 OK", CONTENT_TYPE_LATEST, await render_metrics(self._state))
