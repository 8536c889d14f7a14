"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from easyclaw.core.models import Job, JobStatus, QueueStats
from easyclaw.core.scheduling import CONCURRENCY_KEY_PATTERN, MAX_CONCURRENCY_LIMIT


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class JobCreate(ApiModel):
    """``POST /jobs``. Unknown fields are rejected so that typos do not pass silently."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: str = Field(
        min_length=1, max_length=64, description="Job type, e.g. ECHO or CHAT", examples=["ECHO"]
    )
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="Input of the job; its shape depends on the type",
        examples=[{"message": "Hello from EasyClaw!"}],
    )
    conversation_id: UUID | None = Field(None, description="Conversation a CHAT job continues")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first")
    concurrency_key: str | None = Field(
        None,
        pattern=f"^{CONCURRENCY_KEY_PATTERN}$",
        description="Jobs with the same key run at most concurrencyLimit at a time, in "
        "submission order (CHAT jobs are keyed by their conversation)",
        examples=["tenant:acme/reports"],
    )
    concurrency_limit: int | None = Field(
        None,
        ge=1,
        le=MAX_CONCURRENCY_LIMIT,
        description="How many jobs of concurrencyKey may run at once (default 1)",
    )
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_seconds: float | None = Field(None, gt=0, le=86_400, description="Per attempt")
    run_at: datetime | None = Field(None, description="Do not start before this time")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Same user and key return the same job "
        "(also accepted as the Idempotency-Key header)",
    )

    @field_validator("payload")
    @classmethod
    def _storable_as_json(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """Reject what the queue cannot store as written: integers beyond 64 bits or
        nesting too deep (orjson refuses them at insert), NaN and Infinity (which
        JSON has not, and orjson would silently store as null)."""
        try:
            stored = orjson.loads(orjson.dumps(payload))
        except orjson.JSONEncodeError as error:
            raise ValueError(f"payload cannot be stored as JSON: {error}") from None
        if stored != payload:
            raise ValueError("payload numbers must be finite: JSON has no NaN or Infinity")
        return payload

    @field_validator("run_at")
    @classmethod
    def _readable_back(cls, run_at: datetime | None) -> datetime | None:
        """PostgreSQL stores instants that Python cannot read back (before year 1 or
        after 9999 in the reading session's time zone); such a job would break every
        listing, and every worker's scheduling query, that meets it."""
        if run_at is not None and not 1 < run_at.year < 9999:
            raise ValueError("runAt must fall between the years 2 and 9998")
        return run_at

    @model_validator(mode="after")
    def _limit_needs_a_key(self) -> JobCreate:
        if self.concurrency_limit is not None and self.concurrency_key is None:
            raise ValueError("concurrencyLimit needs a concurrencyKey")
        return self


class JobCreated(ApiModel):
    job_id: UUID
    status: JobStatus
    message: str


class JobPublic(ApiModel):
    id: UUID
    status: JobStatus
    type: str
    payload: dict[str, Any]
    result: Any = None
    error: str | None = None
    conversation_id: UUID | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    priority: int
    attempts: int
    max_attempts: int
    timeout_seconds: float | None = None
    cancel_requested: bool
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id,
            status=job.status,
            type=job.type,
            payload=job.payload,
            result=job.result,
            error=job.error,
            conversation_id=job.conversation_id,
            concurrency_key=job.concurrency_key,
            concurrency_limit=job.concurrency_limit,
            priority=job.priority,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            timeout_seconds=job.timeout_seconds,
            cancel_requested=job.cancel_requested_at is not None,
            run_at=job.run_at,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobsPublic(ApiModel):
    jobs: list[JobPublic]
    count: int
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class StatsPublic(ApiModel):
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

    @classmethod
    def from_stats(cls, stats: QueueStats) -> StatsPublic:
        return cls(**{field: getattr(stats, field) for field in cls.model_fields})


class ErrorPublic(BaseModel):
    error: str = Field(description="Stable machine-readable code, e.g. JOB_NOT_FOUND")
    message: str = Field(description="What went wrong, for humans")
    details: list[dict[str, Any]] | None = None
