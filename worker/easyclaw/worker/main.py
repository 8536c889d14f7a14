"""``easyclaw worker``: run one worker process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from easyclaw.core.db import create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.jsonlog import configure_logging
from easyclaw.core.process import tune_garbage_collector
from easyclaw.core.settings import Settings
from easyclaw.worker.health import HealthServer
from easyclaw.worker.runner import Worker


def worker_pool_size(settings: Settings) -> int:
    """Claim loop, recorder, heartbeat and maintenance each need one; handlers share the rest."""
    return max(4, min(settings.db_pool_max_size, settings.worker_concurrency + 4))


async def run_worker(settings: Settings, registry: JobTypeRegistry | None = None) -> None:
    registry = registry or load_registry(settings)
    pool = create_pool(
        settings,
        application_name="easyclaw-worker",
        min_size=min(4, worker_pool_size(settings)),
        max_size=worker_pool_size(settings),
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
    try:
        await worker.run()
    finally:
        if health is not None:
            await health.close()
        await pool.close()


def main(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    tune_garbage_collector()
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        asyncio.run(run_worker(settings))
