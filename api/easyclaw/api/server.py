"""``easyclaw api``: serve the REST API with uvicorn."""

from __future__ import annotations

import uvicorn

from easyclaw.api.app import create_app
from easyclaw.core.jsonlog import configure_logging
from easyclaw.core.process import tune_garbage_collector
from easyclaw.core.settings import Settings


def main(settings: Settings | None = None, *, workers: int = 1) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, each process builds its
    app (and its own pool) from the environment."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    tune_garbage_collector()
    uvicorn.run(
        create_app(settings) if workers == 1 else "easyclaw.api.app:create_app",
        factory=workers > 1,
        host=settings.api_host,
        port=settings.api_port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
