"""What the operator's handlers share: settings, job types, the pool, the job-event
hub fed by one LISTEN connection, and the Kubernetes client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import kopf

from easyclaw.agents.submission import KnownUsers
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.notifications import JOB_EVENTS, Listener
from easyclaw.operator.job_events import JobEventHub
from easyclaw.operator.kube import KubeClient
from easyclaw.operator.settings import OperatorProcessSettings

APPLICATION_NAME = "easyclaw-operator"


@dataclass(kw_only=True)
class OperatorRuntime:
    settings: OperatorProcessSettings
    registry: JobTypeRegistry
    pool: AsyncPool
    hub: JobEventHub
    listener: Listener
    kube: KubeClient
    users: KnownUsers
    connection: kopf.ConnectionInfo | None = None
    """Fixed Kubernetes credentials; None signs in with the pod's service account
    (or a kubeconfig outside a cluster)."""


@contextlib.asynccontextmanager
async def operator_runtime(
    settings: OperatorProcessSettings,
    *,
    registry: JobTypeRegistry | None = None,
    connection: kopf.ConnectionInfo | None = None,
) -> AsyncIterator[OperatorRuntime]:
    """Open the pool and start listening for job events; close both on exit."""
    registry = registry or load_registry(settings)
    pool = create_pool(
        settings,
        application_name=APPLICATION_NAME,
        min_size=1,
        max_size=min(settings.db_pool_max_size, 10),
        check_on_checkout=True,
    )
    await pool.open(wait=False)
    hub = JobEventHub()
    listener = Listener(
        settings,
        {JOB_EVENTS: hub.on_notification},
        application_name=f"{APPLICATION_NAME}-listener",
        on_connected=hub.wake_all,
    )
    listening = asyncio.create_task(listener.run(), name="easyclaw-operator-listener")
    kube = KubeClient()
    try:
        yield OperatorRuntime(
            settings=settings,
            registry=registry,
            pool=pool,
            hub=hub,
            listener=listener,
            kube=kube,
            users=KnownUsers(free_credits=settings.free_tier_credits),
            connection=connection,
        )
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await kube.close()
        await _close_pool(pool)


async def _close_pool(pool: AsyncPool) -> None:
    """Close the pool after kopf stopped.

    When ``kopf.operator()`` exits it cancels every task that appeared while it
    ran, as it cannot tell its own from others'; that includes the short-lived
    waits inside the pool's scheduler, whose CancelledError then surfaces here.
    Only a cancellation of this task itself is passed on.
    """
    try:
        await pool.close()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
