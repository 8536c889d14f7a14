"""/jobs: submit, read (with long-poll), list and cancel jobs."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Response

from easyclaw.agents.submission import JobRefusedError, JobRequest, submit_job
from easyclaw.api.cursor import MAX_CURSOR_LENGTH, ListCursor
from easyclaw.api.deps import CurrentUser, StateDep, reject_repeated_query_parameters
from easyclaw.api.errors import ApiError
from easyclaw.api.schemas import ErrorPublic, JobCreate, JobCreated, JobPublic, JobsPublic
from easyclaw.core import queue
from easyclaw.core.db import pooled
from easyclaw.core.jobtypes import InvalidPayloadError, UnknownJobTypeError
from easyclaw.core.models import Job, JobStatus

router = APIRouter(
    prefix="/jobs", tags=["jobs"], dependencies=[Depends(reject_repeated_query_parameters)]
)

# HTTP status of each refusal of the core's submit_job (others are 422).
REFUSAL_STATUS = {"INSUFFICIENT_CREDITS": 402, "USER_CHANGED": 409}
MAX_WAIT_SECONDS = 60.0
# The forms of a job id this API prints (and the bare 32 hex digits); UUID() alone
# would also take braces, a urn: prefix and surrounding whitespace.
JOB_ID = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorPublic} for code in (401, 503, *codes)}


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "JOB_NOT_FOUND", f"no job with id {job_id}")


def parse_job_id(job_id: str) -> UUID:
    """Job ids are UUIDs; anything else cannot name a job, so it is simply not found."""
    if not JOB_ID.fullmatch(job_id):
        raise job_not_found(job_id)
    return UUID(job_id)


@router.post(
    "",
    status_code=201,
    response_model=JobCreated,
    responses={
        200: {
            "model": JobCreated,
            "description": "An earlier request with this idempotency key created the job",
        },
        **_errors(400, 402, 409, 413, 422),
    },
)
async def create_job(
    body: JobCreate,
    user_id: CurrentUser,
    state: StateDep,
    response: Response,
    idempotency_key_header: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> JobCreated:
    """Submit a job. It starts as PENDING; poll ``GET /jobs/{jobId}`` for its result.

    A ``runAt`` in the past means now.
    """
    if (
        body.idempotency_key
        and idempotency_key_header
        and body.idempotency_key != idempotency_key_header
    ):
        raise ApiError(
            422, "VALIDATION_ERROR", "idempotencyKey and the Idempotency-Key header differ"
        )
    request = JobRequest(
        user_id=user_id,
        type=body.type,
        payload=body.payload,
        conversation_id=body.conversation_id,
        priority=body.priority,
        max_attempts=body.max_attempts,
        timeout_seconds=body.timeout_seconds,
        run_at=body.run_at,
        idempotency_key=body.idempotency_key or idempotency_key_header,
        concurrency_key=body.concurrency_key,
        concurrency_limit=body.concurrency_limit,
    )
    try:
        enqueued = await submit_job(
            state.pool,
            request,
            registry=state.registry,
            settings=state.settings,
            users=state.users,
            wake_ups=state.wake_ups,
        )
    except UnknownJobTypeError as error:
        raise ApiError(422, "UNKNOWN_JOB_TYPE", str(error)) from None
    except InvalidPayloadError as error:
        details = [
            {"field": ".".join(map(str, p["loc"])), "message": p["msg"], "type": p["type"]}
            for p in error.problems
        ]
        raise ApiError(422, "INVALID_PAYLOAD", str(error), details=details) from None
    except queue.IdempotencyConflictError as error:
        raise ApiError(409, "IDEMPOTENCY_CONFLICT", str(error)) from None
    except JobRefusedError as error:
        raise ApiError(REFUSAL_STATUS.get(error.code, 422), error.code, str(error)) from None
    if not enqueued.created:
        response.status_code = 200
        return JobCreated(
            job_id=enqueued.job.id,
            status=enqueued.job.status,
            message="Job already exists for this idempotency key",
        )
    return JobCreated(
        job_id=enqueued.job.id, status=enqueued.job.status, message="Job created successfully"
    )


@router.get("/{job_id}", response_model=JobPublic, responses=_errors(404, 422))
async def read_job(
    job_id: str,
    user_id: CurrentUser,
    state: StateDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to wait for the job to finish before answering (long-poll)",
        ),
    ] = 0,
) -> JobPublic:
    """A job of the caller's. Other users' jobs are "not found", never "forbidden"."""
    parsed = parse_job_id(job_id)
    if wait <= 0:
        return JobPublic.from_job(await _load(state, parsed, user_id, job_id))
    # The wait holds no database connection: the process's waiters read in batches.
    job = await state.waiters.wait(parsed, user_id=user_id, seconds=wait)
    if job is None:
        raise job_not_found(job_id)
    return JobPublic.from_job(job)


async def _load(state: StateDep, job_id: UUID, user_id: str, raw_id: str) -> Job:
    async with pooled(state.pool) as conn:
        job = await queue.get_job(conn, job_id, user_id=user_id)
    if job is None:
        raise job_not_found(raw_id)
    return job


@router.get("", response_model=JobsPublic, responses=_errors(422))
async def list_jobs(
    user_id: CurrentUser,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: JobStatus | None = None,
    type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="nextCursor of the previous page"),
    ] = None,
) -> JobsPublic:
    """The caller's jobs, newest first."""
    after = None
    if cursor:
        try:
            after = ListCursor.decode(cursor).position
        except ValueError as error:
            raise ApiError(
                422,
                "INVALID_CURSOR",
                f"cursor: {error}; pass the nextCursor of a previous page, or none",
                details=[{"field": "cursor", "message": str(error), "type": "invalid_cursor"}],
            ) from None
    async with pooled(state.pool) as conn:
        jobs = await queue.list_jobs(
            conn, user_id=user_id, limit=limit, status=status, type=type, after=after
        )
    next_cursor = None
    if len(jobs) == limit:
        last = jobs[-1]
        next_cursor = ListCursor(created_at=last.created_at, job_id=last.id).encode()
    return JobsPublic(
        jobs=[JobPublic.from_job(job) for job in jobs], count=len(jobs), next_cursor=next_cursor
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={
        202: {"model": JobPublic, "description": "Running: its worker was told to stop it"},
        **_errors(404, 409),
    },
)
async def cancel_job(
    job_id: str, user_id: CurrentUser, state: StateDep, response: Response
) -> JobPublic:
    """Cancel a job: a PENDING job is CANCELLED at once (200); a RUNNING one is
    stopped by its worker shortly after (202); a finished one cannot be (409)."""
    parsed = parse_job_id(job_id)
    async with pooled(state.pool) as conn:
        result = await queue.cancel_job(conn, job_id=parsed, user_id=user_id)
    if result.job is None:
        raise job_not_found(job_id)
    if not result.changed:
        raise ApiError(
            409,
            "JOB_ALREADY_FINISHED",
            f"job {job_id} already finished with status {result.job.status.value}",
        )
    if result.job.status is JobStatus.RUNNING:
        response.status_code = 202
    return JobPublic.from_job(result.job)
