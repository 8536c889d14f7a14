"""``easyclaw operator``: run the operator for the namespaces in EASYCLAW_OPERATOR_NAMESPACES."""

from __future__ import annotations

import asyncio

import kopf

from easyclaw.core.db import check_database
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.core.settings import SettingsError
from easyclaw.operator.kopf_app import REGISTRY, operator_settings
from easyclaw.operator.runtime import operator_runtime
from easyclaw.operator.settings import OperatorProcessSettings

log = EventLogger("easyclaw.operator")


def check_settings(settings: OperatorProcessSettings) -> None:
    """Refuse to start without what the operator cannot guess."""
    if not settings.operator_namespaces:
        raise SettingsError(
            "EASYCLAW_OPERATOR_NAMESPACES is not set: name the namespaces whose EasyClawJobs "
            "this operator manages, comma-separated (the chart sets its release namespace)"
        )
    settings.require_database_url()


async def run_operator(
    settings: OperatorProcessSettings,
    *,
    registry: JobTypeRegistry | None = None,
    connection: kopf.ConnectionInfo | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until cancelled (or SIGTERM/SIGINT, which kopf handles)."""
    check_settings(settings)
    await check_database(settings, application_name="easyclaw-operator")
    async with operator_runtime(settings, registry=registry, connection=connection) as runtime:
        liveness = (
            f"http://0.0.0.0:{settings.operator_health_port}/healthz"
            if settings.operator_health_port
            else None
        )
        log.info(
            "operator.started",
            namespaces=settings.operator_namespaces,
            job_types=runtime.registry.names,
            health_port=settings.operator_health_port,
        )
        await kopf.operator(
            registry=REGISTRY,
            settings=operator_settings(),
            memo=kopf.Memo(runtime=runtime),
            namespaces=settings.operator_namespaces,
            clusterwide=False,
            standalone=True,
            liveness_endpoint=liveness,
            ready_flag=ready_flag,
        )
        log.info("operator.stopped")


def main(settings: OperatorProcessSettings) -> int:
    check_settings(settings)
    configure_logging(settings.log_level, repeat_window_seconds=settings.log_repeat_window_seconds)
    asyncio.run(run_operator(settings))
    return 0
