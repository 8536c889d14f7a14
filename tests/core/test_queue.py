"""Queue semantics against a real PostgreSQL: claim order, fencing, reaping, retention."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.models import JobStatus, Outcome

Conn = psycopg.AsyncConnection[Any]


async def enqueue(conn: Conn, user: str = "alice", **kwargs: Any) -> queue.Enqueued:
    await queue.ensure_user(conn, user)
    kwargs.setdefault("type", "ECHO")
    kwargs.setdefault("payload", {"n": 1})
    return await queue.enqueue(conn, user_id=user, **kwargs)


async def claim(conn: Conn, worker: str = "w1", limit: int = 10, lease: float = 30.0) -> list[Any]:
    return await queue.claim_jobs(
        conn, worker_id=worker, types=["ECHO", "SLEEP"], limit=limit, lease_seconds=lease
    )


async def status_of(conn: Conn, job_id: UUID) -> JobStatus:
    job = await queue.get_job(conn, job_id, user_id=None)
    assert job is not None
    return job.status


async def test_claim_takes_higher_priority_then_older_first(conn: Conn) -> None:
    low = (await enqueue(conn, priority=0)).job
    high = (await enqueue(conn, priority=5)).job
    later_low = (await enqueue(conn, priority=0)).job
    claimed = await claim(conn, limit=2)
    assert {job.id for job in claimed} == {high.id, low.id}
    assert [job.id for job in await claim(conn)] == [later_low.id]


async def test_concurrent_claims_never_hand_out_the_same_job(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await queue.ensure_user(conn, "alice")
        await queue.enqueue_many(
            conn, user_id="alice", type="ECHO", payloads=[{"i": i} for i in range(300)]
        )

    async def claimer(name: str) -> list[UUID]:
        ids: list[UUID] = []
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            while batch := await claim(c, worker=name, limit=7):
                ids += [job.id for job in batch]
        return ids

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(6)))
    all_ids = [job_id for ids in results for job_id in ids]
    assert len(all_ids) == 300
    assert len(set(all_ids)) == 300


async def test_scheduled_job_is_not_claimed_before_run_at(conn: Conn) -> None:
    cursor = await conn.execute("SELECT now() + interval '1 hour'")
    later = (await cursor.fetchone())[0]  # type: ignore[index]
    job = (await enqueue(conn, run_at=later)).job
    assert await claim(conn) == []
    assert await queue.next_claim_at(conn, types=["ECHO"]) == job.run_at


async def test_completion_is_fenced_by_worker_and_attempt(conn: Conn) -> None:
    job = (await enqueue(conn)).job
    [attempt] = await claim(conn, worker="w1")
    wrong_worker = Outcome(job_id=job.id, attempt=attempt.attempt, status=JobStatus.COMPLETED)
    assert await queue.finish_jobs(conn, worker_id="w2", outcomes=[wrong_worker]) == {}
    stale = Outcome(job_id=job.id, attempt=attempt.attempt - 1, status=JobStatus.COMPLETED)
    assert await queue.finish_jobs(conn, worker_id="w1", outcomes=[stale]) == {}
    assert await status_of(conn, job.id) is JobStatus.RUNNING
    done = Outcome(job_id=job.id, attempt=attempt.attempt, status=JobStatus.COMPLETED, result=[1])
    assert await queue.finish_jobs(conn, worker_id="w1", outcomes=[done]) == {
        job.id: JobStatus.COMPLETED
    }
    # A repeated report (e.g. after an ambiguous commit) changes nothing.
    assert await queue.finish_jobs(conn, worker_id="w1", outcomes=[done]) == {}


async def test_expired_lease_is_requeued_then_failed_after_max_attempts(conn: Conn) -> None:
    job = (await enqueue(conn, max_attempts=2)).job
    [first] = await claim(conn, worker="dead-1", lease=0.01)
    await asyncio.sleep(0.05)  # let the 10 ms lease run out
    [reaped] = await queue.reap_expired_leases(conn)
    assert (reaped.id, reaped.status, reaped.lost_worker_id) == (
        job.id,
        JobStatus.PENDING,
        "dead-1",
    )
    [second] = await claim(conn, worker="dead-2", lease=0.01)
    assert second.attempt == first.attempt + 1
    await asyncio.sleep(0.05)
    [reaped] = await queue.reap_expired_leases(conn)
    assert reaped.status is JobStatus.FAILED
    failed = await queue.get_job(conn, job.id, user_id=None)
    assert failed is not None
    assert failed.error is not None
    assert "lease expired" in failed.error
    assert "attempt 2 of 2" in failed.error
    # The first worker waking up late cannot complete it.
    late = Outcome(job_id=job.id, attempt=first.attempt, status=JobStatus.COMPLETED)
    assert await queue.finish_jobs(conn, worker_id="dead-1", outcomes=[late]) == {}


async def test_retry_outcome_schedules_the_job_with_its_delay(conn: Conn) -> None:
    job = (await enqueue(conn)).job
    [attempt] = await claim(conn)
    retry = Outcome(
        job_id=job.id,
        attempt=attempt.attempt,
        status=JobStatus.PENDING,
        error="boom",
        retry_delay=60,
    )
    assert await queue.finish_jobs(conn, worker_id="w1", outcomes=[retry]) == {
        job.id: JobStatus.PENDING
    }
    after = await queue.get_job(conn, job.id, user_id=None)
    assert after is not None
    assert after.error == "boom"
    assert after.worker_id is None
    assert (after.run_at - after.updated_at).total_seconds() == pytest.approx(60, abs=0.01)
    assert await claim(conn) == []


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    delays = [queue.retry_delay(n, base_seconds=2, max_seconds=30) for n in range(1, 8)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(30, 2 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    samples = {queue.retry_delay(3, base_seconds=2, max_seconds=30) for _ in range(20)}
    assert len(samples) > 1  # jitter spreads retries


async def test_cancel_pending_is_immediate_and_running_is_flagged(conn: Conn) -> None:
    pending = (await enqueue(conn)).job
    running = (await enqueue(conn)).job
    await conn.execute("UPDATE jobs SET priority = 9 WHERE id = %s", (running.id,))
    [claimed] = await claim(conn, limit=1)
    assert claimed.id == running.id
    await conn.execute("LISTEN easyclaw_cancel")
    result = await queue.cancel_job(conn, job_id=pending.id, user_id="alice")
    assert result.changed
    assert result.job is not None
    assert result.job.status is JobStatus.CANCELLED
    result = await queue.cancel_job(conn, job_id=running.id, user_id="alice")
    assert result.job is not None
    assert result.job.status is JobStatus.RUNNING
    assert result.job.cancel_requested_at is not None
    notify = await anext(conn.notifies(timeout=2))
    assert notify.payload == str(running.id)
    # A retry requested after the cancel ends the job instead.
    retry = Outcome(
        job_id=running.id, attempt=claimed.attempt, status=JobStatus.PENDING, retry_delay=1
    )
    assert await queue.finish_jobs(conn, worker_id="w1", outcomes=[retry]) == {
        running.id: JobStatus.CANCELLED
    }
    again = await queue.cancel_job(conn, job_id=running.id, user_id="alice")
    assert not again.changed
    other_user = await queue.cancel_job(conn, job_id=pending.id, user_id="mallory")
    assert other_user.job is None


async def test_release_hands_jobs_back_without_spending_an_attempt(conn: Conn) -> None:
    job = (await enqueue(conn)).job
    [attempt] = await claim(conn)
    released = await queue.release_jobs(conn, worker_id="w1", job_ids=[job.id])
    assert released == {job.id: JobStatus.PENDING}
    after = await queue.get_job(conn, job.id, user_id=None)
    assert after is not None
    assert after.attempts == attempt.attempt - 1


async def test_retention_deletes_only_old_finished_jobs_in_batches(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    await queue.enqueue_many(conn, user_id="alice", type="ECHO", payloads=[{}] * 25)
    await conn.execute(
        "UPDATE jobs SET status = 'COMPLETED', finished_at = now() - interval '2 days'"
    )
    recent = (await enqueue(conn)).job
    old_pending = (await enqueue(conn)).job
    await conn.execute(
        "UPDATE jobs SET created_at = now() - interval '3 days' WHERE id = %s", (old_pending.id,)
    )
    deleted = await queue.delete_finished_jobs(conn, older_than_seconds=86400, batch_size=10)
    assert deleted == 25
    cursor = await conn.execute("SELECT id FROM jobs ORDER BY id")
    assert {row[0] for row in await cursor.fetchall()} == {recent.id, old_pending.id}


async def test_idempotency_key_returns_the_same_job(conn: Conn) -> None:
    first = await enqueue(conn, idempotency_key="k1")
    again = await enqueue(conn, idempotency_key="k1")
    assert first.created
    assert not again.created
    assert again.job.id == first.job.id
    other_user = await enqueue(conn, user="bob", idempotency_key="k1")
    assert other_user.created
    assert other_user.job.id != first.job.id
    with pytest.raises(queue.IdempotencyConflictError):
        await enqueue(conn, idempotency_key="k1", payload={"n": 2})


async def test_stats_count_what_the_autoscaler_and_mirror_need(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    await queue.enqueue_many(conn, user_id="alice", type="ECHO", payloads=[{}] * 6)
    claimed = await claim(conn, limit=3)
    await queue.finish_jobs(
        conn,
        worker_id="w1",
        outcomes=[
            Outcome(job_id=claimed[0].id, attempt=1, status=JobStatus.COMPLETED),
            Outcome(job_id=claimed[1].id, attempt=1, status=JobStatus.FAILED, error="x"),
        ],
    )
    await queue.heartbeat(
        conn, worker_id="w1", worker_name="w", concurrency=4, job_ids=[], lease_seconds=30
    )
    stats = await queue.queue_stats(conn)
    assert (stats.pending, stats.ready, stats.running) == (3, 3, 1)
    assert (stats.completed, stats.failed, stats.cancelled) == (1, 1, 0)
    assert (stats.recent_failures, stats.completed_last_minute, stats.live_workers) == (1, 1, 1)
    assert stats.oldest_pending_age_seconds >= 0
