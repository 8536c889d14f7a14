"""What happens to a job: enqueue, claim, heartbeat, finish, retry, cancel, reap, retain.

Every function takes an open connection, so callers choose the transaction:
the API and workers pass pooled autocommit connections, and a worker passes
the connection of its completion transaction when a job has effects to write.
The SQL lives in ``sql/queries.sql``; this module binds parameters and turns
rows into records.

Lifecycle::

    enqueue ──> PENDING ──claim──> RUNNING ──finish──> COMPLETED | FAILED | CANCELLED
                  ^  ^                │  │
                  │  └──retry (backoff)┘  │
                  └──lease expired (reap) ┘
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from easyclaw.core.backoff import backoff_delay
from easyclaw.core.db import AsyncConn
from easyclaw.core.ids import uuid7
from easyclaw.core.models import (
    ClaimedJob,
    HeartbeatResult,
    Job,
    JobStatus,
    Outcome,
    QueueStats,
    ReapedJob,
)
from easyclaw.core.queries import query
from easyclaw.core.scheduling import RateLimit
from easyclaw.core.storable import ENCODED_NUL, without_nul

# ---------------------------------------------------------------- users


async def ensure_user(conn: AsyncConn, user_id: str, *, free_credits: Decimal | float = 0) -> bool:
    """Create the user on first use; True if it was created now."""
    cursor = await conn.execute(
        query("ensure_user"), {"user_id": user_id, "free_credits": free_credits}
    )
    row = await cursor.fetchone()
    return bool(row and row[0])


# ---------------------------------------------------------------- enqueue


class IdempotencyConflictError(ValueError):
    """The idempotency key was already used for a different request."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(
            f"idempotency key {job.idempotency_key!r} was already used for job {job.id} "
            "with a different type, payload or conversation"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Enqueued:
    job: Job
    created: bool
    """False when an earlier request with the same idempotency key created it."""


async def enqueue(
    conn: AsyncConn,
    *,
    user_id: str,
    type: str,
    payload: dict[str, Any],
    conversation_id: UUID | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    timeout_seconds: float | None = None,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
    concurrency_limit: int | None = None,
    job_id: UUID | None = None,
    wake_workers: bool = True,
) -> Enqueued:
    """Insert a PENDING job; the insert trigger wakes idle workers at commit,
    unless ``wake_workers`` is false: then the caller wakes them once its
    transaction has committed (``WorkerWakeUps``), which keeps the NOTIFY's
    database-wide lock out of the submission's commit.

    With an idempotency key, a repeated request returns the job the first one
    created; the same key with a different type, payload, conversation or
    concurrency key is an IdempotencyConflictError rather than a silent mix-up.

    A ``concurrency_key`` lets at most ``concurrency_limit`` (default 1) jobs of
    that key run at once, in submission order: the submission holds the key's
    advisory lock until its transaction commits, so jobs of one key take their
    ``seq`` in the order they become visible. ``job_id`` is the new job's id
    when the caller needs it beforehand (a conversation named after the job).
    """
    concurrency_limit = None if concurrency_key is None else concurrency_limit or 1
    params = {
        "id": job_id or uuid7(),
        "user_id": user_id,
        "conversation_id": conversation_id,
        "type": type,
        "payload": Jsonb(payload),
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout_seconds": timeout_seconds,
        "run_at": run_at,
        "idempotency_key": idempotency_key,
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "notify_after_commit": "off" if wake_workers else "on",
    }
    cursor = conn.cursor(row_factory=dict_row)
    if concurrency_key is None:
        await cursor.execute(query("insert_job"), params)
        row = await cursor.fetchone()
    else:
        async with conn.transaction():
            await conn.execute(query("lock_concurrency_keys"), {"keys": [concurrency_key]})
            await cursor.execute(query("insert_job"), params)
            row = await cursor.fetchone()
    if row is not None:
        return Enqueued(job=Job.from_row(row), created=True)
    await cursor.execute(
        query("get_job_by_idempotency_key"),
        {"user_id": user_id, "idempotency_key": idempotency_key},
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - a conflict implies the row exists
        raise RuntimeError("idempotent insert found neither a new nor an existing job")
    existing = Job.from_row(row)
    if (existing.type, existing.payload, existing.conversation_id, existing.concurrency_key) != (
        type,
        payload,
        conversation_id,
        concurrency_key,
    ):
        raise IdempotencyConflictError(existing)
    return Enqueued(job=existing, created=False)


async def enqueue_many(
    conn: AsyncConn,
    *,
    user_id: str,
    type: str,
    payloads: Sequence[dict[str, Any]],
    priority: int = 0,
    max_attempts: int = 3,
    concurrency_keys: Sequence[str | None] | None = None,
    concurrency_limit: int = 1,
) -> int:
    """Insert many PENDING jobs of one type in a single statement.

    ``concurrency_keys`` gives each job its key (or None); jobs of one key run
    in the order they have here.
    """
    if not payloads:
        return 0
    keys = list(concurrency_keys) if concurrency_keys is not None else [None] * len(payloads)
    if len(keys) != len(payloads):
        raise ValueError("one concurrency key (or None) per payload")
    params = {
        "user_id": user_id,
        "type": type,
        "priority": priority,
        "max_attempts": max_attempts,
        "ids": [uuid7() for _ in payloads],
        "payloads": [orjson.dumps(payload).decode() for payload in payloads],
        "keys": keys,
        "concurrency_limit": concurrency_limit,
    }
    if not any(keys):
        cursor = await conn.execute(query("insert_jobs"), params)
        return cursor.rowcount
    async with conn.transaction():
        await conn.execute(query("lock_concurrency_keys"), {"keys": keys})
        cursor = await conn.execute(query("insert_jobs"), params)
        return cursor.rowcount


# ---------------------------------------------------------------- reading


async def get_job(conn: AsyncConn, job_id: UUID, *, user_id: str | None) -> Job | None:
    """The job, if it exists and (when ``user_id`` is given) belongs to that user."""
    cursor = conn.cursor(row_factory=dict_row)
    if user_id is None:
        await cursor.execute(query("get_job_any_user"), {"id": job_id})
    else:
        await cursor.execute(query("get_job"), {"id": job_id, "user_id": user_id})
    row = await cursor.fetchone()
    return Job.from_row(row) if row else None


async def get_jobs(conn: AsyncConn, job_ids: Sequence[UUID]) -> list[Job]:
    """The jobs among ``job_ids`` that exist, in no particular order, whoever owns them."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query("get_jobs"), {"ids": list(job_ids)})
    return [Job.from_row(row) for row in await cursor.fetchall()]


async def watch_jobs(conn: AsyncConn, job_ids: Sequence[UUID]) -> None:
    """Ask for ``easyclaw_job_events`` about these jobs from now on.

    Claims and completions notify only watched jobs: a NOTIFY serialises the
    commits of every transaction that sends one. Call it (autocommit, its own
    statement) before reading the jobs whose changes you follow: a change that
    commits later is notified, an earlier one is in what you read.
    """
    if job_ids:
        await conn.execute(query("watch_jobs"), {"ids": list(job_ids)})


async def find_job_by_idempotency_key(
    conn: AsyncConn, *, user_id: str, idempotency_key: str
) -> Job | None:
    """The job a request with this key created, if any (the operator keys jobs by resource uid)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        query("get_job_by_idempotency_key"),
        {"user_id": user_id, "idempotency_key": idempotency_key},
    )
    row = await cursor.fetchone()
    return Job.from_row(row) if row else None


async def list_jobs(
    conn: AsyncConn,
    *,
    user_id: str,
    limit: int,
    status: JobStatus | None = None,
    type: str | None = None,
    after: tuple[datetime, UUID] | None = None,
) -> list[Job]:
    """A page of the user's jobs, newest first, after the (created_at, id) of the last seen."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        query("list_jobs"),
        {
            "user_id": user_id,
            "limit": limit,
            "status": status.value if status else None,
            "type": type,
            "after_created_at": after[0] if after else None,
            "after_id": after[1] if after else None,
        },
    )
    return [Job.from_row(row) for row in await cursor.fetchall()]


# ---------------------------------------------------------------- claiming


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """What one claim started, and where a fair-share claim's ring of users ended."""

    jobs: list[ClaimedJob]
    ring_end: str | None = None
    """The last user the claim visited: the next claim of this worker starts after it."""
    more: bool = False
    """More jobs may be ready (the ring was cut short, or a user used its whole
    share): claim again at once rather than wait."""


async def claim(
    conn: AsyncConn,
    *,
    worker_id: str,
    types: Sequence[str],
    limit: int,
    lease_seconds: float,
    fair_share: bool = True,
    cursor: str = "",
    user_max_running: int = 0,
) -> Claim:
    """Lease up to ``limit`` ready jobs to ``worker_id``; each claim is a new attempt.

    With ``fair_share`` the jobs are shared round-robin between the users that
    have ready ones, starting after ``cursor`` (the previous claim's
    ``ring_end``), and a user with a limit (``users.max_running``, else
    ``user_max_running``; 0 means none) never runs more than it at once.
    Without, they are taken highest priority then oldest first, whoever they
    belong to, and user limits do not apply.
    """
    params = {
        "worker_id": worker_id,
        "types": list(types),
        "limit": limit,
        "lease_seconds": lease_seconds,
    }
    if fair_share:
        params |= {"cursor": cursor, "user_max_running": user_max_running}
    result = await conn.execute(query("claim_jobs_fair" if fair_share else "claim_jobs"), params)
    rows = await result.fetchall()
    ring_end, more = (rows[0][0], rows[0][1]) if rows else (None, False)
    return Claim(
        jobs=[
            ClaimedJob(
                id=job_id,
                user_id=user_id,
                conversation_id=conversation_id,
                type=job_type,
                payload=payload,
                priority=priority,
                attempt=attempts,
                max_attempts=max_attempts,
                timeout_seconds=timeout_seconds,
                created_at=created_at,
                concurrency_key=concurrency_key,
                user_limited=user_limited,
            )
            for (
                _,
                _,
                job_id,
                user_id,
                conversation_id,
                job_type,
                payload,
                priority,
                attempts,
                max_attempts,
                timeout_seconds,
                created_at,
                concurrency_key,
                user_limited,
            ) in rows
            if job_id is not None
        ],
        ring_end=ring_end,
        more=bool(more),
    )


async def claim_jobs(
    conn: AsyncConn,
    *,
    worker_id: str,
    types: Sequence[str],
    limit: int,
    lease_seconds: float,
    fair_share: bool = False,
) -> list[ClaimedJob]:
    """The jobs of one :func:`claim` (by default in global priority order)."""
    claimed = await claim(
        conn,
        worker_id=worker_id,
        types=types,
        limit=limit,
        lease_seconds=lease_seconds,
        fair_share=fair_share,
    )
    return claimed.jobs


async def next_claim_at(
    conn: AsyncConn, *, types: Sequence[str], user_limits: bool = False, user_max_running: int = 0
) -> datetime | None:
    """When an idle worker should claim again: now if a job it could start is ready
    (held by another claim), else when the earliest scheduled job becomes due;
    None if nothing is due (wait for NOTIFY or the poll interval). With
    ``user_limits`` (fair share), jobs of users at their limit are not "ready"."""
    cursor = await conn.execute(
        query("next_claim_at"),
        {"types": list(types), "user_limits": user_limits, "user_max_running": user_max_running},
    )
    row = await cursor.fetchone()
    return row[0] if row else None


async def heartbeat(
    conn: AsyncConn,
    *,
    worker_id: str,
    worker_name: str,
    concurrency: int,
    job_ids: Sequence[UUID],
    lease_seconds: float,
) -> HeartbeatResult:
    """Mark the worker alive and extend the leases of the jobs it holds."""
    cursor = await conn.execute(
        query("heartbeat"),
        {
            "worker_id": worker_id,
            "worker_name": worker_name,
            "concurrency": concurrency,
            "job_ids": list(job_ids),
            "lease_seconds": lease_seconds,
        },
    )
    rows = await cursor.fetchall()
    return HeartbeatResult(
        kept=frozenset(job_id for job_id, _ in rows),
        cancel_requested=frozenset(job_id for job_id, cancel in rows if cancel),
    )


async def worker_stopped(conn: AsyncConn, *, worker_id: str) -> None:
    await conn.execute(query("worker_stopped"), {"worker_id": worker_id})


# ---------------------------------------------------------------- finishing


def retry_delay(attempt: int, *, base_seconds: float, max_seconds: float) -> float:
    """The wait before a failed job's next attempt (``easyclaw.core.backoff``, equal jitter).

    After attempt 1 it waits between half and all of ``base_seconds``, after
    attempt 2 twice that, and so on, capped at ``max_seconds``; the random half
    spreads retries of jobs that failed together.
    """
    return backoff_delay(attempt - 1, base=base_seconds, cap=max_seconds, jitter="equal")


async def finish_jobs(
    conn: AsyncConn, *, worker_id: str, outcomes: Sequence[Outcome]
) -> dict[UUID, JobStatus]:
    """Record how attempts ended, in one statement; return the accepted ones.

    An outcome is accepted only if ``worker_id`` still holds that attempt's
    lease; the rest (lease expired, job reaped or taken over) are ignored, so
    no job is ever completed twice. NUL characters in results and errors are
    stored as U+FFFD (see ``easyclaw.core.storable``).
    """
    if not outcomes:
        return {}
    encoded = orjson.dumps(
        [
            {
                "id": o.job_id,
                "attempt": o.attempt,
                "status": o.status.value,
                "result": o.result,
                "error": o.error,
                "retry_delay": o.retry_delay,
            }
            for o in outcomes
        ]
    )
    if ENCODED_NUL in encoded:
        # jsonb and text refuse NUL: one such character (a scraped page, a
        # model's output, an exception message) would fail the whole batch.
        encoded = orjson.dumps(without_nul(orjson.loads(encoded)))
    cursor = await conn.execute(
        query("finish_jobs"), {"worker_id": worker_id, "outcomes": encoded.decode()}
    )
    return {job_id: JobStatus(status) for job_id, status in await cursor.fetchall()}


async def attempts_already_finished(
    conn: AsyncConn, *, worker_id: str, outcomes: Sequence[Outcome]
) -> dict[UUID, JobStatus]:
    """Which of these attempts this worker already finished (its earlier write committed
    although the connection broke before it could hear so)."""
    if not outcomes:
        return {}
    cursor = await conn.execute(
        query("attempts_already_finished"),
        {
            "worker_id": worker_id,
            "ids": [o.job_id for o in outcomes],
            "attempts": [o.attempt for o in outcomes],
        },
    )
    return {job_id: JobStatus(status) for job_id, status in await cursor.fetchall()}


async def release_jobs(
    conn: AsyncConn, *, worker_id: str, job_ids: Sequence[UUID]
) -> dict[UUID, JobStatus]:
    """Give held jobs back to the queue at shutdown, without spending an attempt."""
    if not job_ids:
        return {}
    cursor = await conn.execute(
        query("release_jobs"), {"worker_id": worker_id, "ids": list(job_ids)}
    )
    return {job_id: JobStatus(status) for job_id, status in await cursor.fetchall()}


async def notify_jobs_ready(conn: AsyncConn, *, reason: str) -> None:
    """Wake idle workers: jobs were handed back (released or reaped), or committed by a
    submitter that wakes them itself (``WorkerWakeUps``), and can be claimed now.

    Outside any transaction: the statement turns synchronous_commit off for the
    transaction it runs in.
    """
    if conn.info.transaction_status is not TransactionStatus.IDLE:
        raise RuntimeError("notify_jobs_ready must run outside a transaction")
    await conn.execute(query("notify_jobs_ready"), {"reason": reason})


async def reap_expired_leases(conn: AsyncConn, *, limit: int = 500) -> list[ReapedJob]:
    """Take back jobs whose worker stopped heartbeating (crashed, killed, partitioned)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query("reap_expired_leases"), {"limit": limit})
    return [
        ReapedJob(
            id=row["id"],
            status=JobStatus(row["status"]),
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            lost_worker_id=row["lost_worker_id"],
        )
        for row in await cursor.fetchall()
    ]


# ---------------------------------------------------------------- cancelling


@dataclass(frozen=True, kw_only=True, slots=True)
class CancelResult:
    job: Job | None
    """The job after the request; None if the user has no such job."""
    changed: bool
    """False if the job had already finished."""


async def cancel_job(conn: AsyncConn, *, job_id: UUID, user_id: str) -> CancelResult:
    """PENDING → CANCELLED at once; RUNNING → flagged, and its worker is notified."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query("cancel_job"), {"id": job_id, "user_id": user_id})
    row = await cursor.fetchone()
    if row is not None:
        return CancelResult(job=Job.from_row(row), changed=True)
    return CancelResult(job=await get_job(conn, job_id, user_id=user_id), changed=False)


# ---------------------------------------------------------------- housekeeping


async def delete_finished_jobs(
    conn: AsyncConn, *, older_than_seconds: float, batch_size: int, max_batches: int = 1000
) -> int:
    """Delete finished jobs older than the cutoff, one small batch per transaction."""
    deleted = 0
    for _ in range(max_batches):
        cursor = await conn.execute(
            query("delete_finished_jobs"),
            {"older_than_seconds": older_than_seconds, "limit": batch_size},
        )
        deleted += cursor.rowcount
        if cursor.rowcount < batch_size:
            break
    return deleted


async def fold_job_status_changes(conn: AsyncConn) -> int:
    """Keep the finished-job counters short to read (any worker's maintenance runs it);
    returns how many change rows it folded (0 when another session was folding)."""
    cursor = await conn.execute(query("fold_job_status_changes"))
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def probe_write(conn: AsyncConn) -> None:
    """Write a row and roll it back; raises the database's error if it cannot write
    (read-only, in recovery, disk full)."""
    async with conn.transaction(force_rollback=True):
        await conn.execute(query("readiness_write_probe"), prepare=False)


async def queue_stats(conn: AsyncConn, *, worker_alive_seconds: float = 60.0) -> QueueStats:
    """Queue-wide counts; the same cost at any number of finished jobs (migration 0005)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query("queue_stats"), {"worker_alive_seconds": worker_alive_seconds})
    row = await cursor.fetchone()
    assert row is not None
    return QueueStats(**row)


# ---------------------------------------------------------------- rate limits


async def configure_rate_limits(
    conn: AsyncConn, *, limits: Sequence[RateLimit], buckets_by_type: dict[str, list[str]]
) -> None:
    """Make ``limits`` the fleet's token buckets, and ``buckets_by_type`` the buckets
    each of those job types takes from (one transaction; a worker does it at start)."""
    async with conn.transaction():
        await conn.execute(query("lock_rate_limit_configuration"))
        names = [limit.name for limit in limits]
        await conn.execute(query("drop_other_rate_limits"), {"names": names})
        await conn.execute(
            query("upsert_rate_limits"),
            {
                "names": names,
                "rates": [limit.rate for limit in limits],
                "bursts": [limit.burst for limit in limits],
                "costs": [limit.claim_cost for limit in limits],
            },
        )
        await conn.execute(query("clear_rate_limit_types"), {"types": list(buckets_by_type)})
        pairs = [(job_type, b) for job_type, names in buckets_by_type.items() for b in names]
        await conn.execute(
            query("insert_rate_limit_types"),
            {"job_types": [t for t, _ in pairs], "buckets": [b for _, b in pairs]},
        )


async def debit_rate_limit(conn: AsyncConn, *, name: str, amount: float) -> None:
    """Take ``amount`` from a bucket (a model's tokens after a call); no bucket, no-op."""
    await conn.execute(query("debit_rate_limit"), {"name": name, "amount": amount})
