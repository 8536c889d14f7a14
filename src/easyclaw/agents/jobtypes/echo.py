"""ECHO: returns its payload. The smallest job, for smoke tests and benchmarks."""

from __future__ import annotations

from typing import Any

from easyclaw.core.jobtypes import JobContext, JobType


async def run_echo(ctx: JobContext) -> dict[str, Any]:
    return ctx.payload


ECHO = JobType(
    name="ECHO",
    handler=run_echo,
    description="Returns its payload unchanged.",
)
