"""Job types of the drills (workers load them with
EASYCLAW_JOB_TYPE_MODULES=bench.drills.jobtypes)."""

from __future__ import annotations

import asyncio
from typing import Any

from easyclaw.core.db import AsyncConn
from easyclaw.core.errors import PermanentJobError
from easyclaw.core.jobtypes import JobContext, JobType

EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS drill_effects (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
)"""
"""No unique key on purpose: a second write for the same job would show as a duplicate."""


async def run_effect(ctx: JobContext) -> dict[str, Any]:
    """Sleeps ``seconds``, then writes one ``drill_effects`` row in the completion
    transaction: the row exists if and only if this attempt's completion was accepted."""
    await asyncio.sleep(float(ctx.payload.get("seconds", 0)))
    job_id, attempt, worker_id = ctx.job.id, ctx.job.attempt, ctx.worker_id

    async def write(conn: AsyncConn) -> None:
        await conn.execute(
            "INSERT INTO drill_effects (job_id, attempt, worker_id) VALUES (%s, %s, %s)",
            (job_id, attempt, worker_id),
        )

    ctx.on_completion(write)
    return {"attempt": attempt}


DRILL_EFFECT = JobType(
    name="DRILL_EFFECT",
    handler=run_effect,
    description="sleeps payload.seconds, then writes a drill_effects row on completion",
)


async def run_poison_result(ctx: JobContext) -> dict[str, Any]:
    """Like DRILL_EFFECT, but its result holds NUL characters (as scraped pages and
    model output can), which PostgreSQL's jsonb refuses unless they are replaced."""
    result = await run_effect(ctx)
    return {**result, "text": "a\x00b", "key\x00": ["\x00"]}


async def run_poison_error(ctx: JobContext) -> None:
    """Fails at once with a NUL in its error text (``text`` refuses NUL too)."""
    await asyncio.sleep(float(ctx.payload.get("seconds", 0)))
    raise PermanentJobError("a poison job: NUL \x00 in the error")


DRILL_POISON_RESULT = JobType(
    name="DRILL_POISON_RESULT",
    handler=run_poison_result,
    description="DRILL_EFFECT with NUL characters in its result",
)
DRILL_POISON_ERROR = JobType(
    name="DRILL_POISON_ERROR",
    handler=run_poison_error,
    description="fails permanently with a NUL character in its error",
)
