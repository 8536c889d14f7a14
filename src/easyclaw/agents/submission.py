"""Submitting a job: the one way a request becomes a PENDING row.

The API (``POST /jobs``) and the operator (an ``EasyClawJob``) both call
:func:`submit_job`, so the same rules hold whoever asks:

* the type must be registered and the payload valid for it;
* ``priority`` lies within ``PRIORITY_MIN``..``PRIORITY_MAX``;
* a ``run_at`` in the past means now (the insert takes the later of the two,
  so a job can neither jump the queue nor report an absurd waiting time);
* a new user is created with the free-tier credit (a ``FREE_TIER`` transaction);
* with billing enforced, a user whose balance is not above zero is refused;
* a conversation must be the user's own;
* a concurrency key must be well formed, and its limit needs a key;
* a job of a conversational type (CHAT) belongs to a conversation, created now
  (with the job's id, titled by the message) when none is named, and is keyed
  ``conversation:<id>`` with limit 1, so a conversation's messages are answered
  one at a time, in order; such a job takes no key of its own;
* an idempotency key returns the job the first request with it created.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from easyclaw.agents import billing
from easyclaw.agents.conversations import (
    conversation_key,
    conversation_title,
    create_conversation,
    user_has_conversation,
)
from easyclaw.agents.settings import AgentSettings
from easyclaw.core import queue
from easyclaw.core.db import AsyncConn, AsyncPool, pooled
from easyclaw.core.ids import uuid7
from easyclaw.core.jobtypes import JobType, JobTypeRegistry
from easyclaw.core.models import Job
from easyclaw.core.scheduling import MAX_CONCURRENCY_LIMIT, is_concurrency_key
from easyclaw.core.wakeups import WorkerWakeUps

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRequest:
    """What a client asks for; ``None`` fields take the type's or the settings' default."""

    user_id: str
    type: str
    payload: dict[str, Any]
    conversation_id: UUID | None = None
    priority: int = 0
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    run_at: datetime | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None


class JobRefusedError(ValueError):
    """The request cannot become a job; ``code`` is the API's error code for it."""

    code = "VALIDATION_ERROR"


class InsufficientCreditsError(JobRefusedError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, user_id: str, balance: Decimal | None) -> None:
        self.balance = balance or Decimal(0)
        super().__init__(
            f"the credit balance of user {user_id!r}, which is {self.balance:f}, is not "
            "above zero; add credits to submit jobs"
        )


class UnknownConversationError(JobRefusedError):
    code = "UNKNOWN_CONVERSATION"

    def __init__(self, user_id: str, conversation_id: UUID) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"user {user_id!r} has no conversation {conversation_id}")


@dataclass(kw_only=True)
class KnownUsers:
    """User ids this process has already created, so a submission skips the upsert.

    Each user is created once, with the free-tier credit; later submissions of
    a cached user cost no statement for it.
    """

    free_credits: Decimal = Decimal(0)
    capacity: int = 100_000
    _seen: OrderedDict[str, None] = field(default_factory=OrderedDict)

    async def ensure(self, conn: AsyncConn, user_id: str) -> None:
        if user_id in self._seen:
            self._seen.move_to_end(user_id)
            return
        await queue.ensure_user(conn, user_id, free_credits=self.free_credits)
        self._seen[user_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def forget(self, user_id: str) -> None:
        self._seen.pop(user_id, None)


class UserChangedError(JobRefusedError):
    code = "USER_CHANGED"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"the record of user {user_id!r} changed meanwhile; retry the request")


async def submit_job(
    pool: AsyncPool,
    request: JobRequest,
    *,
    registry: JobTypeRegistry,
    settings: AgentSettings,
    users: KnownUsers,
    wake_ups: WorkerWakeUps | None = None,
) -> queue.Enqueued:
    """Validate the request, apply the user and billing rules, and enqueue the job.

    With ``wake_ups`` the workers are woken through it once the job is
    committed, rather than by the insert trigger inside the transaction.

    An invalid request is refused before a connection is taken. Raises
    ``UnknownJobTypeError`` or ``InvalidPayloadError`` (from the registry), a
    ``JobRefusedError``, ``queue.IdempotencyConflictError``, or
    ``DatabaseUnavailableError``.
    """
    job_type = registry.get(request.type)
    payload = job_type.validate_payload(request.payload)
    if not PRIORITY_MIN <= request.priority <= PRIORITY_MAX:
        raise JobRefusedError(
            f"priority must lie between {PRIORITY_MIN} and {PRIORITY_MAX}, not {request.priority}"
        )
    job_id = uuid7()
    conversation_id, key, limit = _sequencing(request, job_type, job_id)
    async with pooled(pool) as conn:
        await users.ensure(conn, request.user_id)
        if settings.billing_enforce:
            balance = await billing.balance_of(conn, request.user_id)
            if balance is None or balance <= 0:
                raise InsufficientCreditsError(request.user_id, balance)
        if request.conversation_id is not None and not await user_has_conversation(
            conn, request.conversation_id, request.user_id
        ):
            raise UnknownConversationError(request.user_id, request.conversation_id)
        enqueue = functools.partial(
            queue.enqueue,
            conn,
            job_id=job_id,
            user_id=request.user_id,
            type=job_type.name,
            payload=payload,
            conversation_id=conversation_id,
            priority=request.priority,
            max_attempts=request.max_attempts
            or job_type.max_attempts
            or settings.job_default_max_attempts,
            timeout_seconds=request.timeout_seconds,
            run_at=request.run_at,
            idempotency_key=request.idempotency_key,
            concurrency_key=key,
            concurrency_limit=limit,
            wake_workers=wake_ups is None,
        )
        try:
            if conversation_id != job_id:
                enqueued = await enqueue()
            else:
                # A new conversation, named after its first job, created with it.
                async with conn.transaction() as transaction:
                    await create_conversation(
                        conn,
                        conversation_id=job_id,
                        user_id=request.user_id,
                        title=conversation_title(payload),
                    )
                    try:
                        enqueued = await enqueue()
                    except queue.IdempotencyConflictError as error:
                        if not _started_its_own(error.job, job_type, payload):
                            raise
                        enqueued = queue.Enqueued(job=error.job, created=False)
                    if not enqueued.created:
                        raise psycopg.Rollback(transaction)  # a repeat starts no conversation
        except psycopg.errors.ForeignKeyViolation:
            # The user row vanished after it was cached (deleted by an admin).
            users.forget(request.user_id)
            raise UserChangedError(request.user_id) from None
    if enqueued.created and wake_ups is not None:
        wake_ups.soon()  # committed: in either branch the transaction has ended
    return enqueued


def _sequencing(
    request: JobRequest, job_type: JobType, job_id: UUID
) -> tuple[UUID | None, str | None, int | None]:
    """The job's conversation, concurrency key and limit, or JobRefusedError."""
    key, limit = request.concurrency_key, request.concurrency_limit
    if key is not None and not is_concurrency_key(key):
        raise JobRefusedError(
            "concurrencyKey must be 1-200 letters, digits or ._:@|/+=- characters"
        )
    if limit is not None and not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        raise JobRefusedError(
            f"concurrencyLimit must lie between 1 and {MAX_CONCURRENCY_LIMIT}, not {limit}"
        )
    if limit is not None and key is None:
        raise JobRefusedError("concurrencyLimit needs a concurrencyKey")
    if not job_type.conversational:
        return request.conversation_id, key, limit
    if key is not None:
        raise JobRefusedError(
            f"{job_type.name} jobs are keyed by their conversation; "
            "send conversationId instead of concurrencyKey"
        )
    conversation_id = request.conversation_id or job_id
    return conversation_id, conversation_key(conversation_id), 1


def _started_its_own(job: Job, job_type: JobType, payload: dict[str, Any]) -> bool:
    """Whether ``job`` is what a request without a conversation created: a repeat of it
    (same idempotency key) names a new conversation of its own, which the first one did."""
    return (
        job.type == job_type.name
        and job.conversation_id == job.id
        and job.concurrency_key == conversation_key(job.id)
        and job.payload == payload
    )
