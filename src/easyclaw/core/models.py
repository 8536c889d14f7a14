"""The records the queue reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID


class JobStatus(StrEnum):
    PENDING = "PENDING"
    """Waiting to be claimed, not before ``run_at``."""
    RUNNING = "RUNNING"
    """Claimed by a worker that holds its lease."""
    COMPLETED = "COMPLETED"
    """Finished successfully; ``result`` holds the handler's return value."""
    FAILED = "FAILED"
    """Failed permanently, or used every attempt; ``error`` says why."""
    CANCELLED = "CANCELLED"
    """Cancelled by its user before it finished."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class TransactionType(StrEnum):
    PURCHASE = "PURCHASE"
    """Credits bought by the user."""
    USAGE = "USAGE"
    """Credits spent by a job (negative amount), at most once per job."""
    FREE_TIER = "FREE_TIER"
    """Credits granted to a new user."""
    REFUND = "REFUND"
    """Credits given back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """A row of the ``jobs`` table."""

    id: UUID
    user_id: str
    conversation_id: UUID | None
    status: JobStatus
    type: str
    payload: dict[str, Any]
    result: Any
    error: str | None
    priority: int
    attempts: int
    max_attempts: int
    timeout_seconds: float | None
    run_at: datetime
    idempotency_key: str | None
    worker_id: str | None
    locked_at: datetime | None
    lease_expires_at: datetime | None
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    concurrency_key: str | None = None
    """Jobs sharing a key run at most ``concurrency_limit`` at a time, in ``seq`` order."""
    concurrency_limit: int | None = None
    seq: int | None = None
    """Submission order, assigned by the database."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            conversation_id=row["conversation_id"],
            status=JobStatus(row["status"]),
            type=row["type"],
            payload=row["input_payload"],
            result=row["result_payload"],
            error=row["error"],
            priority=row["priority"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            timeout_seconds=row["timeout_seconds"],
            run_at=row["run_at"],
            idempotency_key=row["idempotency_key"],
            worker_id=row["worker_id"],
            locked_at=row["locked_at"],
            lease_expires_at=row["lease_expires_at"],
            cancel_requested_at=row["cancel_requested_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            concurrency_key=row["concurrency_key"],
            concurrency_limit=row["concurrency_limit"],
            seq=row["seq"],
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimedJob:
    """One attempt of a job, as handed to a worker by ``claim_jobs``."""

    id: UUID
    user_id: str
    conversation_id: UUID | None
    type: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    timeout_seconds: float | None
    created_at: datetime
    concurrency_key: str | None = None
    user_limited: bool = False
    """Claimed under its user's limit: when it ends, another job of the user may start."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """How one attempt ended, to be recorded (fenced) by ``finish_jobs``.

    ``status`` PENDING means "retry after ``retry_delay`` seconds".
    """

    job_id: UUID
    attempt: int
    status: JobStatus
    result: Any = None
    error: str | None = None
    retry_delay: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReapedJob:
    """A job taken back from a worker whose lease expired."""

    id: UUID
    status: JobStatus
    attempts: int
    max_attempts: int
    lost_worker_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class HeartbeatResult:
    kept: frozenset[UUID]
    """Jobs whose lease was extended; any other job the worker holds was taken from it."""
    cancel_requested: frozenset[UUID]
    """Held jobs whose user asked to cancel them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    pending: int
    ready: int
    running: int
    completed: int
    failed: int
    cancelled: int
    recent_failures: int
    completed_last_minute: int
    oldest_pending_age_seconds: float
    live_workers: int
