"""Run one attempt of a job and decide what its outcome is."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from easyclaw.agents.state import StateStore
from easyclaw.agents.state.workspace import job_workspace
from easyclaw.core.db import is_unavailable
from easyclaw.core.errors import JobTimeoutError, PermanentJobError, RetryableJobError
from easyclaw.core.jobtypes import InvalidPayloadError, JobContext, JobType
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome
from easyclaw.core.queue import retry_delay
from easyclaw.core.settings import JobSettings

MAX_ERROR_LENGTH = 2000


def attempt_timeout(job: ClaimedJob, job_type: JobType, settings: JobSettings) -> float:
    """The job's own timeout, else its type's, else the setting."""
    return job.timeout_seconds or job_type.timeout_seconds or settings.job_default_timeout_seconds


def is_retryable(error: BaseException, job_type: JobType) -> bool:
    if isinstance(error, PermanentJobError):
        return False
    return (
        isinstance(error, (RetryableJobError, TimeoutError))
        or is_unavailable(error)
        or isinstance(error, job_type.retry_on)
    )


def describe(error: BaseException) -> str:
    text = str(error)
    if not isinstance(error, (RetryableJobError, PermanentJobError)):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:MAX_ERROR_LENGTH]


def failure_outcome(
    job: ClaimedJob, job_type: JobType, error: BaseException, settings: JobSettings
) -> Outcome:
    """Retry later (PENDING) if the error is transient and attempts remain, else FAILED."""
    message = describe(error)
    if is_retryable(error, job_type) and job.attempt < job.max_attempts:
        explicit = error.retry_after if isinstance(error, RetryableJobError) else None
        delay = (
            explicit
            if explicit is not None
            else retry_delay(
                job.attempt,
                base_seconds=settings.retry_base_seconds,
                max_seconds=settings.retry_max_seconds,
            )
        )
        return Outcome(
            job_id=job.id,
            attempt=job.attempt,
            status=JobStatus.PENDING,
            error=message,
            retry_delay=delay,
        )
    if is_retryable(error, job_type):
        message = f"{message} (gave up after attempt {job.attempt} of {job.max_attempts})"
    return Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.FAILED, error=message)


async def run_handler(job_type: JobType, ctx: JobContext, state_store: StateStore | None) -> Any:
    """The handler's result; for ``uses_state`` types inside the user's workspace."""
    if not job_type.uses_state:
        return await job_type.handler(ctx)
    if state_store is None:
        raise PermanentJobError(f"{job_type.name} needs per-user state, but no store is set up")
    async with job_workspace(ctx, state_store):
        result = await job_type.handler(ctx)
        orjson.dumps(result)  # before storing state for a result that cannot be stored
    return result


async def run_attempt(
    job_type: JobType, ctx: JobContext, state_store: StateStore | None = None
) -> Outcome:
    """Call the handler under the job's timeout and turn what happened into an Outcome.

    Everything of a stateful attempt (download, handler, upload) counts
    against its timeout.

    Cancellation (user cancel, lost lease, shutdown) propagates to the caller,
    which knows why it cancelled.
    """
    job = ctx.job
    timeout = attempt_timeout(job, job_type, ctx.settings)
    try:
        job_type.validate_payload(job.payload)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result: Any = await run_handler(job_type, ctx, state_store)
        except TimeoutError as error:
            if deadline.expired():
                raise JobTimeoutError(f"attempt timed out after {timeout:g} s") from error
            raise
        orjson.dumps(result)  # a result that cannot be stored is the handler's bug
    except InvalidPayloadError as error:
        return failure_outcome(job, job_type, PermanentJobError(str(error)), ctx.settings)
    except orjson.JSONEncodeError as error:
        return failure_outcome(
            job, job_type, PermanentJobError(f"result is not JSON: {error}"), ctx.settings
        )
    except Exception as error:
        return failure_outcome(job, job_type, error, ctx.settings)
    return Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result=result)
