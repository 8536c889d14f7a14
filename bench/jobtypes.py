"""Job types the benchmarks run (registered with EASYCLAW_JOB_TYPE_MODULES=bench.jobtypes)."""

from __future__ import annotations

import asyncio
from typing import Any

from easyclaw.core.jobtypes import JobContext, JobType


async def run_bench_sleep(ctx: JobContext) -> dict[str, Any]:
    """Waits ``seconds`` without using the CPU: a job of known length."""
    await asyncio.sleep(float(ctx.payload.get("seconds", 0.05)))
    return {}


BENCH_SLEEP = JobType(name="BENCH_SLEEP", handler=run_bench_sleep, description="sleeps seconds")
