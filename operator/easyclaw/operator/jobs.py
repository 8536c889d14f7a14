"""The operator's calls into the shared core: enqueue, read and cancel a resource's job."""

from __future__ import annotations

from uuid import UUID

from easyclaw.core import queue
from easyclaw.core.conversations import user_has_conversation
from easyclaw.core.db import AsyncPool, pooled
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.models import Job
from easyclaw.core.settings import Settings
from easyclaw.operator.resource import idempotency_key
from easyclaw.operator.spec import InvalidSpecError, JobRequest

log = EventLogger("easyclaw.operator")


async def submit_job(
    pool: AsyncPool, settings: Settings, request: JobRequest, *, uid: str
) -> queue.Enqueued:
    """Enqueue the resource's job once: the resource uid is the idempotency key, so a
    replayed ADDED event (or a retried handler) returns the job the first one created."""
    async with pooled(pool) as conn:
        await queue.ensure_user(conn, request.user_id)
        if request.conversation_id is not None and not await user_has_conversation(
            conn, request.conversation_id, request.user_id
        ):
            raise InvalidSpecError(
                f"spec.conversationId: user {request.user_id!r} has no conversation "
                f"{request.conversation_id}"
            )
        try:
            return await queue.enqueue(
                conn,
                user_id=request.user_id,
                type=request.type,
                payload=request.payload,
                conversation_id=request.conversation_id,
                priority=request.priority,
                max_attempts=request.max_attempts or settings.job_default_max_attempts,
                idempotency_key=idempotency_key(uid),
            )
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
    async with pooled(pool) as conn:
        return await queue.get_job(conn, job_id, user_id=None)


async def cancel_job(pool: AsyncPool, job: Job) -> queue.CancelResult:
    """PENDING ends CANCELLED at once; RUNNING is flagged and its worker told to stop."""
    async with pooled(pool) as conn:
        return await queue.cancel_job(conn, job_id=job.id, user_id=job.user_id)
