"""Stopping a running attempt: a user's cancel, and a lease the worker no longer holds.

Leases are fenced by (worker_id, attempt): a worker whose lease expired and was
reaped must stop the attempt, and whatever it reports late is rejected, so the
job completes exactly once, through its next claim.
"""

from __future__ import annotations

import asyncio

import pytest

from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import Job, JobStatus
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    enqueue,
    events,
    fetch_all,
    running_worker,
    wait_status,
)

pytestmark = pytest.mark.usefixtures("effects_table")


async def expire_and_reap(conn: Conn, job: Job) -> None:
    """What happens when a worker stops heartbeating: its lease runs out and is reaped."""
    await conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (job.id,)
    )
    reaped = await queue.reap_expired_leases(conn)
    assert [(r.id, r.status) for r in reaped] == [(job.id, JobStatus.PENDING)]


async def first_heartbeat_done(conn: Conn, worker_id: str) -> None:
    """Wait until a worker's first heartbeat (sent as it starts) has committed.

    With a long heartbeat interval, tests that reap a lease count on no heartbeat
    coming after the reap; on a loaded machine the first one can be late enough
    to run after it and report the lease lost before the attempt finishes. The
    heartbeat writes the worker row in the same statement as the lease extension.
    """
    await wait_for(
        lambda: fetch_all(conn, "SELECT 1 FROM workers WHERE id = %s", (worker_id,)), timeout=10
    )


async def test_cancelling_a_running_job_stops_it_within_a_second(
    database_url: str, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    # Heartbeats every 10 s: only the NOTIFY on easyclaw_cancel can stop it this fast.
    settings = make_settings(
        database_url, worker_lease_seconds=30.0, worker_heartbeat_interval_seconds=10.0
    )
    async with running_worker(settings, pool):
        job = await enqueue(conn, "SLEEP", {"seconds": 30})
        await wait_status(conn, job.id, JobStatus.RUNNING)
        result = await queue.cancel_job(conn, job_id=job.id, user_id=USER)
        assert result.changed
        cancelled = await wait_status(conn, job.id, JobStatus.CANCELLED, timeout=3)
    assert cancelled.cancel_requested_at is not None
    assert cancelled.finished_at is not None
    took = (cancelled.finished_at - cancelled.cancel_requested_at).total_seconds()
    assert took < 1.0, f"the cancel took {took:.3f} s"
    assert cancelled.error == "cancelled by its user while running"
    assert cancelled.attempts == 1
    assert events(worker_logs, "job.stopping", job_id=str(job.id), reason="user cancel")
    assert events(worker_logs, "job.cancelled", job_id=str(job.id))


async def test_lost_lease_is_noticed_at_the_next_heartbeat_and_the_attempt_stopped(
    database_url: str, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    heartbeat = 0.5
    first_settings = make_settings(
        database_url,
        worker_heartbeat_interval_seconds=heartbeat,
        worker_poll_interval_seconds=60.0,  # it will not claim the job again by itself
        worker_maintenance_interval_seconds=60.0,
    )
    async with running_worker(first_settings, pool) as first:
        job = await enqueue(conn, "EFFECT", {"seconds": 30})
        await wait_status(conn, job.id, JobStatus.RUNNING)
        # Not ready again until the second worker takes it: a wake-up of this worker
        # (e.g. the NOTIFY of the insert, delivered late) must not re-claim it here.
        await conn.execute(
            "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE id = %s", (job.id,)
        )
        reaped_at = asyncio.get_running_loop().time()
        await expire_and_reap(conn, job)
        await wait_for(
            lambda: events(worker_logs, "job.stopping", job_id=str(job.id), reason="lease lost"),
            timeout=heartbeat + 2.0,
        )
        noticed_after = asyncio.get_running_loop().time() - reaped_at
        assert noticed_after < heartbeat + 1.0
        await wait_for(lambda: first.busy == 0, timeout=2)
        # Another worker takes the job back and completes it, with a short payload.
        await conn.execute(
            "UPDATE jobs SET input_payload = '{\"seconds\": 0.1}', run_at = now() WHERE id = %s",
            (job.id,),
        )
        second_settings = make_settings(database_url)
        async with running_worker(second_settings, pool) as second:
            done = await wait_status(conn, job.id, JobStatus.COMPLETED)
    assert done.attempts == 2
    assert done.worker_id == second.worker_id
    effects = await fetch_all(conn, "SELECT job_id, attempt, worker_id FROM job_effects")
    assert effects == [(job.id, 2, second.worker_id)]
    # The stopped attempt reported nothing: it neither completed nor failed the job.
    assert not events(worker_logs, "job.lease_lost", job_id=str(job.id))


async def test_late_completion_after_losing_the_lease_is_rejected(
    database_url: str, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    # The first worker's next heartbeat is 10 s away: its attempt finishes before it
    # could learn that the lease is gone, and reports a completion it no longer owns.
    # One slot, held by that attempt: a late wake-up (the NOTIFY of the insert) cannot
    # make it claim the reaped job back and stop the attempt; the second worker must.
    first_settings = make_settings(
        database_url,
        worker_concurrency=1,
        worker_lease_seconds=30.0,
        worker_heartbeat_interval_seconds=10.0,
        worker_poll_interval_seconds=60.0,
        worker_maintenance_interval_seconds=60.0,
    )
    async with running_worker(first_settings, pool) as first:
        job = await enqueue(conn, "EFFECT", {"seconds": 1.5})
        await wait_status(conn, job.id, JobStatus.RUNNING)
        await first_heartbeat_done(conn, first.worker_id)
        await expire_and_reap(conn, job)
        async with running_worker(make_settings(database_url), pool) as second:
            await wait_for(
                lambda: events(worker_logs, "job.lease_lost", job_id=str(job.id)), timeout=5
            )
            done = await wait_status(conn, job.id, JobStatus.COMPLETED)
        assert first.busy == 0
    [late] = events(worker_logs, "job.lease_lost", job_id=str(job.id))
    assert late["attempt"] == 1
    assert done.attempts == 2
    assert done.worker_id == second.worker_id
    assert done.result == {"attempt": 2}
    effects = await fetch_all(conn, "SELECT job_id, attempt, worker_id FROM job_effects")
    assert effects == [(job.id, 2, second.worker_id)]
    completed = events(worker_logs, "job.completed", job_id=str(job.id))
    assert [record["attempt"] for record in completed] == [2]


async def test_worker_that_claims_back_a_job_it_lost_completes_it_once(
    database_url: str, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    # The lease of a running attempt is reaped, and the same worker claims the job
    # again before its heartbeat noticed: two attempts of one job in one worker.
    settings = make_settings(
        database_url,
        worker_lease_seconds=30.0,
        worker_heartbeat_interval_seconds=10.0,
        worker_poll_interval_seconds=60.0,
        worker_maintenance_interval_seconds=60.0,
    )
    async with running_worker(settings, pool) as worker:
        job = await enqueue(conn, "EFFECT", {"seconds": 1.0})
        await wait_status(conn, job.id, JobStatus.RUNNING)
        await first_heartbeat_done(conn, worker.worker_id)
        await expire_and_reap(conn, job)
        waker = await enqueue(conn, "ECHO", {})  # the insert wakes the worker: it claims both
        await wait_status(conn, waker.id, JobStatus.COMPLETED)
        done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=10)
        await wait_for(lambda: worker.busy == 0, timeout=5)
    assert done.attempts == 2
    assert done.result == {"attempt": 2}
    effects = await fetch_all(conn, "SELECT job_id, attempt, worker_id FROM job_effects")
    assert effects == [(job.id, 2, worker.worker_id)]
    assert not events(worker_logs, "worker.error")
