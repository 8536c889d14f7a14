"""Job types for tests, registered in worker processes through
EASYCLAW_JOB_TYPE_MODULES=tests.support.jobtypes (the repository root is on
PYTHONPATH in those processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from easyclaw.core.db import AsyncConn, pooled
from easyclaw.core.errors import PermanentJobError, RetryableJobError
from easyclaw.core.jobtypes import JobContext, JobType


async def run_sleep(ctx: JobContext) -> dict[str, Any]:
    await asyncio.sleep(float(ctx.payload.get("seconds", 1)))
    return {"slept": ctx.payload.get("seconds", 1), "attempt": ctx.job.attempt}


async def run_fail(ctx: JobContext) -> None:
    raise PermanentJobError(str(ctx.payload.get("reason", "this job always fails")))


async def run_flaky(ctx: JobContext) -> dict[str, Any]:
    """Fails with a retryable error until attempt ``succeed_on``."""
    if ctx.job.attempt < int(ctx.payload.get("succeed_on", 2)):
        raise RetryableJobError(f"transient failure on attempt {ctx.job.attempt}")
    return {"attempt": ctx.job.attempt}


async def run_crash(ctx: JobContext) -> None:
    raise ZeroDivisionError("handler bug")


async def run_effect(ctx: JobContext) -> dict[str, Any]:
    """Writes one row to ``job_effects`` in the completion transaction.

    Tests create ``job_effects(job_id uuid, attempt int, worker_id text)``
    without a unique key, so a second write for the same job would show.
    """
    delay = float(ctx.payload.get("seconds", 0))
    if delay:
        await asyncio.sleep(delay)
    job_id, attempt, worker_id = ctx.job.id, ctx.job.attempt, ctx.worker_id

    async def write(conn: AsyncConn) -> None:
        await conn.execute(
            "INSERT INTO job_effects (job_id, attempt, worker_id) VALUES (%s, %s, %s)",
            (job_id, attempt, worker_id),
        )

    ctx.on_completion(write)
    return {"attempt": attempt}


async def run_bad_effect(ctx: JobContext) -> dict[str, Any]:
    """Succeeds, but its completion effect fails (the table does not exist)."""

    async def write(conn: AsyncConn) -> None:
        await conn.execute("INSERT INTO no_such_table VALUES (1)")

    ctx.on_completion(write)
    return {"attempt": ctx.job.attempt}


async def run_counter(ctx: JobContext) -> dict[str, Any]:
    """Adds one to ``counter.txt`` in the user's state (after ``seconds``); ``fail`` fails."""
    assert ctx.workspace is not None
    counter = ctx.workspace / "counter.txt"
    count = int(counter.read_text()) if counter.exists() else 0
    await asyncio.sleep(float(ctx.payload.get("seconds", 0)))
    counter.write_text(str(count + 1))
    jobs = ctx.workspace / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / f"{ctx.job.id}.txt").write_text(f"attempt {ctx.job.attempt} saw {count}")
    if ctx.payload.get("fail"):
        raise PermanentJobError("failed after changing the workspace")
    return {"count": count + 1, "workspace": str(ctx.workspace)}


async def run_poison_result(ctx: JobContext) -> dict[str, Any]:
    """Returns NUL characters in a value, a key and a list, as a scraped page or a
    model's output can (PostgreSQL's jsonb refuses them)."""
    return {"text": "before\x00after", "key\x00": 1, "items": ["\x00", {"deep": "a\x00"}]}


async def run_poison_error(ctx: JobContext) -> None:
    raise PermanentJobError("the page held a NUL \x00 byte")


SLEEP = JobType(name="SLEEP", handler=run_sleep, description="sleeps payload.seconds")
FAIL = JobType(name="FAIL", handler=run_fail, description="fails permanently")
FLAKY = JobType(name="FLAKY", handler=run_flaky, description="fails until attempt succeed_on")
CRASH = JobType(name="CRASH", handler=run_crash, description="raises an unexpected exception")
EFFECT = JobType(name="EFFECT", handler=run_effect, description="writes a row on completion")
BAD_EFFECT = JobType(
    name="BAD_EFFECT", handler=run_bad_effect, description="its completion write fails"
)
POISON_RESULT = JobType(
    name="POISON_RESULT", handler=run_poison_result, description="returns NUL characters"
)
POISON_ERROR = JobType(
    name="POISON_ERROR", handler=run_poison_error, description="fails with a NUL in its error"
)

COUNTER = JobType(
    name="COUNTER", handler=run_counter, description="counts in the user's state", uses_state=True
)

JOB_EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS job_effects (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
)"""


async def run_turn(ctx: JobContext) -> dict[str, Any]:
    """One turn of a conversation: records when this attempt ran in ``turn_runs``
    (created by the test), sleeps ``seconds``, and writes a ``job_effects`` row on
    completion. Tests read the rows to check that a conversation's turns never
    overlapped and ran in order."""
    job, worker_id = ctx.job, ctx.worker_id
    async with pooled(ctx.pool) as conn:
        await conn.execute(
            "INSERT INTO turn_runs (job_id, attempt, worker_id, started_at) "
            "VALUES (%s, %s, %s, clock_timestamp())",
            (job.id, job.attempt, worker_id),
        )
    await asyncio.sleep(float(ctx.payload.get("seconds", 0.1)))
    async with pooled(ctx.pool) as conn:
        await conn.execute(
            "UPDATE turn_runs SET ended_at = clock_timestamp() WHERE job_id = %s AND attempt = %s",
            (job.id, job.attempt),
        )

    async def write(conn: AsyncConn) -> None:
        await conn.execute(
            "INSERT INTO job_effects (job_id, attempt, worker_id) VALUES (%s, %s, %s)",
            (job.id, job.attempt, worker_id),
        )

    ctx.on_completion(write)
    return {"attempt": job.attempt}


TURN = JobType(
    name="TURN",
    handler=run_turn,
    conversational=True,
    description="a conversation's turn that records when it ran",
)

TURN_RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS turn_runs (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz
)"""
