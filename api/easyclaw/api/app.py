"""The FastAPI application: routes, error handlers, middleware and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from easyclaw.agents.submission import KnownUsers
from easyclaw.api.auth import Authenticator
from easyclaw.api.errors import install_error_handlers
from easyclaw.api.metrics import MetricsServer
from easyclaw.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from easyclaw.api.readiness import Readiness
from easyclaw.api.routes import health, jobs, stats
from easyclaw.api.settings import ApiProcessSettings
from easyclaw.api.state import ApiState
from easyclaw.api.waiters import JobWaiters
from easyclaw.core.db import create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.jsonlog import write_repeat_counts
from easyclaw.core.tls import client_tls_context
from easyclaw.core.wakeups import WorkerWakeUps


def create_app(
    settings: ApiProcessSettings | None = None, registry: JobTypeRegistry | None = None
) -> FastAPI:
    settings = settings or ApiProcessSettings()
    registry = registry or load_registry(settings)
    http = httpx.AsyncClient(verify=client_tls_context())
    # One pool per process. Checking a connection on checkout costs one round
    # trip and means no request fails on a connection a DB restart killed.
    pool = create_pool(settings, application_name="easyclaw-api", check_on_checkout=True)
    state = ApiState(
        settings=settings,
        registry=registry,
        pool=pool,
        waiters=JobWaiters(settings, pool),
        readiness=Readiness(pool),
        authenticator=Authenticator(settings, http),
        http=http,
        users=KnownUsers(free_credits=settings.free_tier_credits),
        wake_ups=WorkerWakeUps(pool),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Start even if the database is down: /readyz says so, and requests get 503.
        await state.pool.open(wait=False)
        waiters = asyncio.create_task(state.waiters.run(), name="api-long-poll-waiters")
        wake_ups = asyncio.create_task(state.wake_ups.run(), name="api-worker-wake-ups")
        metrics = MetricsServer(state) if settings.api_metrics_port else None
        if metrics is not None:
            await metrics.start()
        try:
            yield
        finally:
            for task in (waiters, wake_ups):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await state.wake_ups.flush()
            if metrics is not None:
                await metrics.close()
            await state.pool.close()
            await http.aclose()
            write_repeat_counts()

    app = FastAPI(
        title="EasyClaw",
        summary="Submit AI-agent jobs and read their results.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.easyclaw = state
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(stats.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
