"""``easyclaw worker``: run one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from easyclaw.core.db import CLAIMING_SESSION_SETTINGS, check_database, create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.core.process import tune_garbage_collector
from easyclaw.worker.health import HealthServer
from easyclaw.worker.pod_deletion_cost import KubernetesTarget, NotInCluster, PodDeletionCost
from easyclaw.worker.runner import Worker
from easyclaw.worker.settings import WorkerProcessSettings

log = EventLogger("easyclaw.worker")


def pod_deletion_cost(settings: WorkerProcessSettings) -> PodDeletionCost | None:
    """The deletion-cost updater if enabled and on Kubernetes; a warning otherwise."""
    if not settings.worker_pod_deletion_cost:
        return None
    try:
        return PodDeletionCost(KubernetesTarget.in_cluster())
    except NotInCluster as error:
        log.warning("worker.pod_deletion_cost_disabled", reason=str(error))
        return None


async def run_worker(
    settings: WorkerProcessSettings, registry: JobTypeRegistry | None = None
) -> None:
    registry = registry or load_registry(settings)
    await check_database(settings, application_name="easyclaw-worker")
    # Every statement a worker sends is short (batched claims and completions, a
    # heartbeat, maintenance, handlers' reads), so they take turns on one
    # connection: a fleet of 50 workers holds 100 connections (with the
    # listeners), not 50 x (concurrency + 4).
    pool = create_pool(
        settings,
        application_name="easyclaw-worker",
        min_size=settings.worker_db_connections,
        max_size=settings.worker_db_connections,
        session_settings=CLAIMING_SESSION_SETTINGS,
    )
    await pool.open(wait=False)
    worker = Worker(settings, registry, pool)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    health = None
    if settings.worker_health_port:
        health = HealthServer(
            settings.worker_health_host,
            settings.worker_health_port,
            lambda: worker.last_db_contact,
        )
        await health.start()
    cost = pod_deletion_cost(settings)
    cost_task = None
    if cost is not None:
        cost_task = asyncio.create_task(cost.follow(lambda: worker.busy), name="deletion-cost")
    try:
        await worker.run()
    finally:
        if cost_task is not None and cost is not None:
            cost_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cost_task
            await cost.aclose()
        if health is not None:
            await health.close()
        await pool.close()


def main(settings: WorkerProcessSettings | None = None) -> None:
    settings = settings or WorkerProcessSettings()
    configure_logging(settings.log_level, repeat_window_seconds=settings.log_repeat_window_seconds)
    tune_garbage_collector()
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        asyncio.run(run_worker(settings))
