"""The operator's calls into the shared core: enqueue, read and cancel a resource's job."""

from __future__ import annotations

import dataclasses
from uuid import UUID

from easyclaw.agents import submission
from easyclaw.agents.submission import JobRequest
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, pooled
from easyclaw.core.jobtypes import InvalidPayloadError, UnknownJobTypeError
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.models import Job
from easyclaw.operator.resource import idempotency_key
from easyclaw.operator.runtime import OperatorRuntime
from easyclaw.operator.spec import InvalidSpecError

log = EventLogger("easyclaw.operator")


async def submit_job(runtime: OperatorRuntime, request: JobRequest, *, uid: str) -> queue.Enqueued:
    """Enqueue the resource's job once, through the same core path as ``POST /jobs``.

    The resource uid is the idempotency key, so a replayed ADDED event (or a
    retried handler) returns the job the first one created. What the core
    refuses (no credits, another user's conversation) is an InvalidSpecError.
    """
    keyed = dataclasses.replace(request, idempotency_key=idempotency_key(uid))
    try:
        return await submission.submit_job(
            runtime.pool,
            keyed,
            registry=runtime.registry,
            settings=runtime.settings,
            users=runtime.users,
        )
    except submission.UnknownConversationError as error:
        raise InvalidSpecError(f"spec.conversationId: {error}") from None
    except submission.JobRefusedError as error:
        raise InvalidSpecError(str(error)) from None
    except (UnknownJobTypeError, InvalidPayloadError) as error:
        raise InvalidSpecError(str(error)) from None
    except queue.IdempotencyConflictError as error:
        # The spec changed after the job was created; the job keeps the original.
        log.warning("operator.spec_changed", job_id=str(error.job.id), uid=uid)
        return queue.Enqueued(job=error.job, created=False)


async def find_job(pool: AsyncPool, *, job_id: UUID | None, user_id: str, uid: str) -> Job | None:
    """The resource's job: by ``status.jobId``, else by its idempotency key (the status
    patch may not have been written when the operator stopped)."""
    async with pooled(pool) as conn:
        if job_id is not None:
            return await queue.get_job(conn, job_id, user_id=None)
        return await queue.find_job_by_idempotency_key(
            conn, user_id=user_id, idempotency_key=idempotency_key(uid)
        )


async def read_job(pool: AsyncPool, job_id: UUID) -> Job | None:
    """The followed job as it is now; its claims and completions are notified from now on."""
    async with pooled(pool) as conn:
        await queue.watch_jobs(conn, [job_id])
        return await queue.get_job(conn, job_id, user_id=None)


async def cancel_job(pool: AsyncPool, job: Job) -> queue.CancelResult:
    """PENDING ends CANCELLED at once; RUNNING is flagged and its worker told to stop."""
    async with pooled(pool) as conn:
        return await queue.cancel_job(conn, job_id=job.id, user_id=job.user_id)
