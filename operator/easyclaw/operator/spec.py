"""What a valid EasyClawJob spec is, and the job it asks for.

The CRD's OpenAPI schema already rejects most malformed specs at admission,
but it cannot know which job types are installed or what their payloads look
like, and an API server without schema validation (or an older CRD) may let
anything through. So the operator validates the whole spec again, against
the same job-type registry the API uses, before anything is enqueued.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from easyclaw.agents.submission import PRIORITY_MAX, PRIORITY_MIN, JobRequest
from easyclaw.core.ids import USER_ID_PATTERN
from easyclaw.core.jobtypes import InvalidPayloadError, JobTypeRegistry, UnknownJobTypeError
from easyclaw.core.scheduling import CONCURRENCY_KEY_PATTERN, MAX_CONCURRENCY_LIMIT


class InvalidSpecError(ValueError):
    """The spec cannot become a job; the message is shown in status.error and an Event."""


class EasyClawJobSpec(BaseModel):
    """``spec`` of an EasyClawJob, as the CRD documents it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    # pydantic matches patterns with Rust's regex engine, where `$` is the end of the
    # text (Python's `$` would also accept a trailing newline).
    user_id: str = Field(alias="userId", pattern=f"^{USER_ID_PATTERN}$")
    conversation_id: UUID | None = Field(None, alias="conversationId")
    concurrency_key: str | None = Field(
        None, alias="concurrencyKey", pattern=f"^{CONCURRENCY_KEY_PATTERN}$"
    )
    concurrency_limit: int | None = Field(
        None, alias="concurrencyLimit", ge=1, le=MAX_CONCURRENCY_LIMIT
    )
    priority: int = Field(0, ge=PRIORITY_MIN, le=PRIORITY_MAX)
    max_attempts: int | None = Field(None, alias="maxAttempts", ge=1, le=100)
    ttl_seconds_after_finished: int | None = Field(None, alias="ttlSecondsAfterFinished", ge=0)


def _describe(error: ValidationError) -> str:
    problems = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        problems.append(f"spec.{location}: {problem['msg']}" if location else problem["msg"])
    return "; ".join(problems)


def parse_spec(spec: Mapping[str, Any], registry: JobTypeRegistry) -> JobRequest:
    """The job this spec asks for, or InvalidSpecError saying, readably, what is wrong.

    The core's ``submit_job`` checks the request again (and applies the user and
    billing rules); checking here too gives the resource a message naming spec fields.
    """
    if "payload" in spec and not isinstance(spec["payload"], dict):
        raise InvalidSpecError(
            f"spec.payload must be an object, not {type(spec['payload']).__name__}"
        )
    try:
        parsed = EasyClawJobSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise InvalidSpecError(f"invalid spec: {_describe(error)}") from None
    try:
        job_type = registry.get(parsed.type)
        payload = job_type.validate_payload(parsed.payload)
    except (UnknownJobTypeError, InvalidPayloadError) as error:
        raise InvalidSpecError(str(error)) from None
    if parsed.concurrency_limit is not None and parsed.concurrency_key is None:
        raise InvalidSpecError("spec.concurrencyLimit needs spec.concurrencyKey")
    if job_type.conversational and parsed.concurrency_key is not None:
        raise InvalidSpecError(
            f"spec.concurrencyKey: {job_type.name} jobs are keyed by their conversation; "
            "set spec.conversationId instead"
        )
    return JobRequest(
        type=job_type.name,
        payload=payload,
        user_id=parsed.user_id,
        conversation_id=parsed.conversation_id,
        priority=parsed.priority,
        max_attempts=parsed.max_attempts or job_type.max_attempts,
        concurrency_key=parsed.concurrency_key,
        concurrency_limit=parsed.concurrency_limit,
    )


def ttl_seconds(spec: Mapping[str, Any]) -> int | None:
    """``ttlSecondsAfterFinished`` when it is a usable number (also for invalid specs)."""
    value = spec.get("ttlSecondsAfterFinished")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
