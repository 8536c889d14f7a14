"""A worker and what holds jobs back (in-process worker, real database): the next
job of a key starts as soon as the one before it finishes, without a poll; a
claim the database refuses (two running jobs of a sequential key) is logged and
claimed again rather than failing the worker; and a worker whose only ready
work is rate-limited sleeps until the bucket refills instead of polling."""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import JobStatus
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    enqueue,
    events,
    fetch_value,
    get,
    running_worker,
    wait_status,
)

LONG_POLL = 30.0


async def test_the_next_job_of_a_key_starts_when_the_one_before_finishes(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, worker_poll_interval_seconds=LONG_POLL)
    first = await enqueue(conn, "SLEEP", {"seconds": 0.3}, concurrency_key="k")
    second = await enqueue(conn, "SLEEP", {"seconds": 0}, concurrency_key="k")
    async with running_worker(settings, pool):
        done = await wait_status(conn, second.id, JobStatus.COMPLETED, timeout=10)
        before = await wait_status(conn, first.id, JobStatus.COMPLETED)
    assert before.finished_at is not None
    assert done.started_at is not None
    assert done.started_at >= before.finished_at
    # Woken by its own completion, not by the 30 s poll.
    gap = (done.started_at - before.finished_at).total_seconds()
    assert gap < 1.0, f"the next job started {gap:.2f} s after the first finished"


async def test_a_refused_claim_is_logged_and_claimed_again(
    database_url: str,
    pool: AsyncPool,
    conn: Conn,
    worker_logs: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(database_url, worker_maintenance_interval_seconds=0.5)
    first = await enqueue(conn, "SLEEP", {"seconds": 0}, concurrency_key="k")
    second = await enqueue(conn, "SLEEP", {"seconds": 0}, concurrency_key="k")
    async with await psycopg.AsyncConnection.connect(database_url) as rogue:
        # Start the second job behind the rule's back, and keep it uncommitted while
        # the worker claims the first: the claim's snapshot cannot see it running.
        await rogue.execute(
            "UPDATE jobs SET status = 'RUNNING', worker_id = 'rogue', attempts = 1, "
            "lease_expires_at = clock_timestamp() + interval '1 second' WHERE id = %s",
            (second.id,),
        )
        async with running_worker(settings, pool):

            async def claim_waits_on_the_rogue() -> bool:
                waiting = await fetch_value(
                    conn,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' "
                    "AND NOT granted",
                )
                return bool(waiting)

            await wait_for(claim_waits_on_the_rogue, timeout=10)
            await rogue.commit()
            await wait_for(lambda: events(worker_logs, "claim.key_conflict"), timeout=10)
            # The rogue's lease runs out, the reaper hands its job back, and then
            # the first job runs before the second, as their order says.
            done_first = await wait_status(conn, first.id, JobStatus.COMPLETED, timeout=15)
            done_second = await wait_status(conn, second.id, JobStatus.COMPLETED, timeout=15)
    assert done_first.finished_at is not None
    assert done_second.started_at is not None
    assert done_second.started_at >= done_first.finished_at
    # Claims refused while the rogue's job holds the key back off (0.1 s, then
    # doubling) instead of following each other until its lease runs out (about
    # 40 in that second before).
    conflicts = events(worker_logs, "claim.key_conflict")
    assert 1 <= len(conflicts) <= 8, f"{len(conflicts)} refused claims"
    assert "jobs_one_running_per_key_idx" in conflicts[0]["error"]
    assert not events(worker_logs, "worker.error")


async def test_jobs_without_a_key_are_unaffected_by_a_busy_key(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url)
    await queue.ensure_user(conn, USER)
    blocker = await enqueue(conn, "SLEEP", {"seconds": 2}, concurrency_key="busy")
    waiting = await enqueue(conn, "SLEEP", {"seconds": 0}, concurrency_key="busy")
    free = await enqueue(conn, "SLEEP", {"seconds": 0})
    async with running_worker(settings, pool):
        await wait_status(conn, free.id, JobStatus.COMPLETED, timeout=5)
        assert (await get(conn, waiting.id)).status is JobStatus.PENDING
        await wait_status(conn, blocker.id, JobStatus.COMPLETED, timeout=10)
        await wait_status(conn, waiting.id, JobStatus.COMPLETED, timeout=5)


async def test_an_idle_worker_waits_for_the_next_token_instead_of_polling(
    database_url: str, pool: AsyncPool, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only rate-limited work is ready: the worker sleeps until the bucket refills.

    The worker's claims are counted as it makes them (a spy around the real
    ``queue.claim``): per token one claim that starts a job, one that finds the
    bucket empty, and one idle check. Polling every 50 ms for the ready but
    limited jobs would add some 20 claims per second.
    """
    claims: list[int] = []
    real_claim = queue.claim

    async def counted_claim(*args: Any, **kwargs: Any) -> queue.Claim:
        result = await real_claim(*args, **kwargs)
        claims.append(len(result.jobs))
        return result

    monkeypatch.setattr(queue, "claim", counted_claim)
    settings = make_settings(
        database_url, rate_limits="type:SLEEP=4/s", worker_poll_interval_seconds=30
    )
    jobs = [await enqueue(conn, "SLEEP", {"seconds": 0}) for _ in range(8)]
    async with running_worker(settings, pool):
        for job in jobs:
            await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=10)
    starts = [(await get(conn, job.id)).started_at for job in jobs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert min(gaps) > 0.2, f"jobs started faster than 4/s: {gaps}"
    assert sum(claims) == len(jobs)
    assert len(claims) <= 2 * len(jobs) + 2, f"{len(claims)} claims for {len(jobs)} tokens"
