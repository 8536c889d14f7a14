"""Concurrency keys against a real PostgreSQL: at most `limit` jobs of a key run
at once, in submission order, across retries, reaped leases and cancels; the
database refuses a second running job of a sequential key; and submissions of
one key are serialised so that their order is the order they commit in."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome
from tests.support.waiting import wait_for

Conn = psycopg.AsyncConnection[Any]
USER = "alice"


async def enqueue(conn: Conn, key: str | None = "k", **kwargs: Any) -> queue.Enqueued:
    await queue.ensure_user(conn, USER)
    kwargs.setdefault("type", "ECHO")
    kwargs.setdefault("payload", {})
    return await queue.enqueue(conn, user_id=USER, concurrency_key=key, **kwargs)


async def claim(conn: Conn, worker: str = "w1", limit: int = 10, lease: float = 30.0) -> list[Any]:
    return await queue.claim_jobs(
        conn, worker_id=worker, types=["ECHO"], limit=limit, lease_seconds=lease
    )


async def finish(conn: Conn, job: ClaimedJob, worker: str = "w1", **outcome: Any) -> None:
    outcome.setdefault("status", JobStatus.COMPLETED)
    done = Outcome(job_id=job.id, attempt=job.attempt, **outcome)
    assert await queue.finish_jobs(conn, worker_id=worker, outcomes=[done]) == {
        job.id: outcome["status"]
    }


async def test_jobs_of_a_key_run_one_at_a_time_in_submission_order(conn: Conn) -> None:
    first, second, third = [(await enqueue(conn)).job for _ in range(3)]
    free = (await enqueue(conn, key=None)).job
    assert [job.concurrency_limit for job in (first, second, third)] == [1, 1, 1]
    assert first.seq is not None
    assert second.seq is not None
    assert third.seq is not None
    assert first.seq < second.seq < third.seq

    claimed = await claim(conn)
    assert {job.id for job in claimed} == {first.id, free.id}
    assert await claim(conn) == [], "the second job of the key started while the first ran"
    await finish(conn, next(job for job in claimed if job.id == first.id))
    [running] = await claim(conn)
    assert running.id == second.id
    await finish(conn, running)
    [running] = await claim(conn)
    assert running.id == third.id


async def test_a_higher_priority_job_does_not_overtake_its_key(conn: Conn) -> None:
    first = (await enqueue(conn, priority=0)).job
    urgent = (await enqueue(conn, priority=100)).job
    [running] = await claim(conn)
    assert running.id == first.id
    await finish(conn, running)
    assert [job.id for job in await claim(conn)] == [urgent.id]


async def test_a_limit_above_one_runs_that_many_at_once(conn: Conn) -> None:
    jobs = [(await enqueue(conn, concurrency_limit=3)).job for _ in range(5)]
    claimed = await claim(conn)
    assert [job.id for job in sorted(claimed, key=lambda j: j.created_at)] == [
        job.id for job in jobs[:3]
    ]
    await finish(conn, claimed[0])
    [fourth] = await claim(conn)
    assert fourth.id == jobs[3].id
    assert await claim(conn) == []


async def test_a_retried_job_keeps_its_place_and_holds_back_the_rest(conn: Conn) -> None:
    first, second = [(await enqueue(conn)).job for _ in range(2)]
    [attempt] = await claim(conn)
    await finish(conn, attempt, status=JobStatus.PENDING, error="try later", retry_delay=0.2)
    # In backoff the first job is still unfinished, so the second must wait for it.
    assert await claim(conn) == []
    retried: list[Any] = await wait_for(lambda: claim(conn), timeout=5, interval=0.05)
    assert [job.id for job in retried] == [first.id]
    assert retried[0].attempt == 2
    await finish(conn, retried[0])
    assert [job.id for job in await claim(conn)] == [second.id]


async def test_a_reaped_lease_keeps_its_place(conn: Conn) -> None:
    first, second = [(await enqueue(conn)).job for _ in range(2)]
    await claim(conn, worker="dead", lease=0.01)
    await asyncio.sleep(0.05)
    [reaped] = await queue.reap_expired_leases(conn)
    assert (reaped.id, reaped.status) == (first.id, JobStatus.PENDING)
    [again] = await claim(conn, worker="w2")
    assert (again.id, again.attempt) == (first.id, 2)
    assert await claim(conn, worker="w3") == []
    await finish(conn, again, worker="w2")
    assert [job.id for job in await claim(conn, worker="w3")] == [second.id]


async def test_cancelling_the_job_in_front_lets_the_next_one_start_and_wakes_workers(
    conn: Conn, database_url: str
) -> None:
    first, second = [(await enqueue(conn)).job for _ in range(2)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN easyclaw_jobs_ready")
        result = await queue.cancel_job(conn, job_id=first.id, user_id=USER)
        assert result.job is not None
        assert result.job.status is JobStatus.CANCELLED
        woken = [n.channel async for n in listener.notifies(timeout=2, stop_after=1)]
    assert woken == ["easyclaw_jobs_ready"]
    assert [job.id for job in await claim(conn)] == [second.id]


async def test_next_claim_at_ignores_jobs_waiting_for_their_key(conn: Conn) -> None:
    """Idle workers must not poll every 50 ms because blocked jobs look ready."""
    await enqueue(conn)
    await enqueue(conn)
    [running] = await claim(conn)
    assert await queue.next_claim_at(conn, types=["ECHO"]) is None
    await finish(conn, running)
    # Now the second one is ready: claim it at once.
    claim_at = await queue.next_claim_at(conn, types=["ECHO"])
    cursor = await conn.execute("SELECT now()")
    assert claim_at is not None
    assert claim_at <= (await cursor.fetchone())[0]  # type: ignore[index]


async def test_the_database_refuses_a_second_running_job_of_a_sequential_key(
    conn: Conn,
) -> None:
    first, second = [(await enqueue(conn)).job for _ in range(2)]
    await claim(conn)
    with pytest.raises(psycopg.errors.UniqueViolation) as raised:
        await conn.execute(
            "UPDATE jobs SET status = 'RUNNING', worker_id = 'rogue', "
            "lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (second.id,),
        )
    assert raised.value.diag.constraint_name == "jobs_one_running_per_key_idx"
    limited = (await enqueue(conn, key="wide", concurrency_limit=2)).job
    assert limited.concurrency_limit == 2
    assert first.id != limited.id


async def test_a_second_submission_of_a_key_waits_for_the_first_to_commit(
    database_url: str, conn: Conn
) -> None:
    """Without this, a claimer could see the later job but not the earlier one
    (still uncommitted) and start them out of order."""
    await queue.ensure_user(conn, USER)
    async with (
        await psycopg.AsyncConnection.connect(database_url) as slow,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as observer,
    ):

        async def second_is_waiting_for_the_key() -> bool:
            cursor = await observer.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            row = await cursor.fetchone()
            return row is not None and row[0] == 1

        async with slow.transaction():
            first = (await queue.enqueue(slow, user_id=USER, type="ECHO", payload={},
                                         concurrency_key="k")).job  # fmt: skip
            second_task = asyncio.create_task(enqueue(conn))
            await wait_for(second_is_waiting_for_the_key, timeout=5)
            assert not second_task.done()
        second = (await second_task).job
    assert first.seq is not None
    assert second.seq is not None
    assert first.seq < second.seq


async def test_unkeyed_jobs_are_not_serialised(conn: Conn) -> None:
    jobs = [(await enqueue(conn, key=None)).job for _ in range(3)]
    assert {job.id for job in await claim(conn)} == {job.id for job in jobs}


async def test_bulk_enqueue_keeps_the_order_of_each_key(conn: Conn) -> None:
    await queue.ensure_user(conn, USER)
    keys = ["a", "b", "a", None, "b", "a"]
    assert (
        await queue.enqueue_many(
            conn,
            user_id=USER,
            type="ECHO",
            payloads=[{"i": i} for i in range(len(keys))],
            concurrency_keys=keys,
        )
        == 6
    )
    order: list[int] = []
    while batch := await claim(conn):
        for job in batch:
            order.append(job.payload["i"])
            await finish(conn, job)
    assert [i for i in order if keys[i] == "a"] == [0, 2, 5]
    assert [i for i in order if keys[i] == "b"] == [1, 4]
    assert sorted(order) == list(range(6))
