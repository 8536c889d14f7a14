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
* an idempotency key returns the job the first request with it created.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from easyclaw.agents import billing
from easyclaw.agents.conversations import user_has_conversation
from easyclaw.core import queue
from easyclaw.core.db import AsyncConn, AsyncPool, pooled
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.settings import Settings

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
    settings: Settings,
    users: KnownUsers,
) -> queue.Enqueued:
    """Validate the request, apply the user and billing rules, and enqueue the job.

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
        try:
            return await queue.enqueue(
                conn,
                user_id=request.user_id,
                type=job_type.name,
                payload=payload,
                conversation_id=request.conversation_id,
                priority=request.priority,
                max_attempts=request.max_attempts
                or job_type.max_attempts
                or settings.job_default_max_attempts,
                timeout_seconds=request.timeout_seconds,
                run_at=request.run_at,
                idempotency_key=request.idempotency_key,
            )
        except psycopg.errors.ForeignKeyViolation:
            # The user row vanished after it was cached (deleted by an admin).
            users.forget(request.user_id)
            raise UserChangedError(request.user_id) from None
