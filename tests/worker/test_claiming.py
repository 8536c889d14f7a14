"""When and in what order a worker claims jobs (in-process worker, real database).

An idle worker is woken by NOTIFY the moment a job is inserted, sleeps until
the next scheduled job's run_at rather than for a whole poll interval, and
takes higher priority first, then older first. Timings are measured with the
database's own timestamps (created_at, run_at, started_at), not wall clocks.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import JobStatus
from tests.support.settings import make_settings
from tests.worker.helpers import (
    USER,
    Conn,
    db_now,
    effects_per_job,
    enqueue,
    fetch_all,
    running_worker,
    wait_status,
)

# Long enough that a test passing within it cannot have been served by the poll.
LONG_POLL = 30.0


async def test_idle_worker_picks_up_a_new_job_within_milliseconds(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, worker_poll_interval_seconds=LONG_POLL)
    async with running_worker(settings, pool):
        # After its first job the worker is certainly idle, asleep until woken.
        first = await enqueue(conn, "ECHO", {"n": 0})
        await wait_status(conn, first.id, JobStatus.COMPLETED)
        latencies = []
        for n in range(1, 6):
            job = await enqueue(conn, "ECHO", {"n": n})
            done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=5)
            assert done.started_at is not None
            latencies.append((done.started_at - done.created_at).total_seconds())
    assert max(latencies) < 0.5, f"pickup latencies (s): {latencies}"
    assert sorted(latencies)[len(latencies) // 2] < 0.1, f"pickup latencies (s): {latencies}"


async def test_scheduled_job_is_claimed_at_its_run_at_not_at_the_next_poll(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, worker_poll_interval_seconds=LONG_POLL)
    async with running_worker(settings, pool):
        run_at = await db_now(conn) + timedelta(seconds=1.5)
        job = await enqueue(conn, "ECHO", {"scheduled": True}, run_at=run_at)
        assert job.run_at == run_at
        done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=6)
    assert done.started_at is not None
    late_by = (done.started_at - run_at).total_seconds()
    assert 0 <= late_by < 0.5, f"claimed {late_by:.3f} s after its run_at"


async def test_earlier_scheduled_job_enqueued_later_shortens_the_sleep(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, worker_poll_interval_seconds=LONG_POLL)
    async with running_worker(settings, pool):
        now = await db_now(conn)
        later = await enqueue(conn, "ECHO", {"which": "later"}, run_at=now + timedelta(hours=1))
        sooner_at = now + timedelta(seconds=1)
        sooner = await enqueue(conn, "ECHO", {"which": "sooner"}, run_at=sooner_at)
        done = await wait_status(conn, sooner.id, JobStatus.COMPLETED, timeout=6)
        assert done.started_at is not None
        assert 0 <= (done.started_at - sooner_at).total_seconds() < 0.5
        assert (await wait_status(conn, later.id, JobStatus.PENDING)).attempts == 0


async def test_higher_priority_first_then_oldest_first(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    # One job at a time, so the order of claims is the order of starts.
    settings = make_settings(database_url, worker_concurrency=1, worker_claim_batch_size=1)
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5), ("f", -3), ("g", 9)]
    jobs = {name: await enqueue(conn, "ECHO", {"name": name}, priority=p) for name, p in plan}
    async with running_worker(settings, pool):
        for job in jobs.values():
            await wait_status(conn, job.id, JobStatus.COMPLETED)
    rows = await fetch_all(conn, "SELECT input_payload->>'name' FROM jobs ORDER BY started_at")
    assert [name for (name,) in rows] == ["d", "g", "b", "e", "a", "c", "f"]


@pytest.mark.usefixtures("effects_table")
async def test_each_effect_job_writes_exactly_one_row(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    await queue.ensure_user(conn, USER)
    count = 200
    await queue.enqueue_many(
        conn, user_id=USER, type="EFFECT", payloads=[{"i": i} for i in range(count)]
    )
    async with running_worker(settings, pool) as worker:
        rows = await fetch_all(conn, "SELECT id FROM jobs")
        for (job_id,) in rows:
            await wait_status(conn, job_id, JobStatus.COMPLETED)
    per_job = await effects_per_job(conn)
    assert set(per_job) == {job_id for (job_id,) in rows}
    assert set(per_job.values()) == {1}
    writers = await fetch_all(conn, "SELECT DISTINCT worker_id, attempt FROM job_effects")
    assert writers == [(worker.worker_id, 1)]


@pytest.mark.usefixtures("effects_table")
async def test_failed_attempts_write_no_effects(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    # An EFFECT job whose attempt times out registers its effect only on success.
    async with running_worker(settings, pool):
        slow = await enqueue(conn, "EFFECT", {"seconds": 2}, timeout_seconds=0.2, max_attempts=1)
        fast = await enqueue(conn, "EFFECT", {"seconds": 0})
        await wait_status(conn, slow.id, JobStatus.FAILED)
        await wait_status(conn, fast.id, JobStatus.COMPLETED)
    assert await effects_per_job(conn) == {fast.id: 1}


@pytest.mark.usefixtures("effects_table")
async def test_a_failing_effect_fails_only_its_own_job(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    # Completions are written in batches; one job's failing write rolls the batch
    # back, and the recorder must then isolate it instead of retrying forever.
    await queue.ensure_user(conn, USER)
    await queue.enqueue_many(conn, user_id=USER, type="EFFECT", payloads=[{}] * 20)
    bad = await enqueue(conn, "BAD_EFFECT", max_attempts=1)
    await queue.enqueue_many(conn, user_id=USER, type="EFFECT", payloads=[{}] * 20)
    async with running_worker(settings, pool):
        failed = await wait_status(conn, bad.id, JobStatus.FAILED)
        rows = await fetch_all(conn, "SELECT id FROM jobs WHERE type = 'EFFECT'")
        for (job_id,) in rows:
            await wait_status(conn, job_id, JobStatus.COMPLETED)
    assert failed.error is not None
    assert "no_such_table" in failed.error
    assert failed.result is None
    per_job = await effects_per_job(conn)
    assert set(per_job) == {job_id for (job_id,) in rows}
    assert set(per_job.values()) == {1}


async def test_a_failing_effect_alone_in_its_batch_fails_its_job(
    settings: Settings, pool: AsyncPool, conn: Conn
) -> None:
    async with running_worker(settings, pool):
        bad = await enqueue(conn, "BAD_EFFECT", max_attempts=1)
        failed = await wait_status(conn, bad.id, JobStatus.FAILED)
    assert failed.error is not None
    assert "no_such_table" in failed.error
