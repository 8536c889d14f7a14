"""Finished-job totals (migration 0005) stay exactly equal to counting the jobs
table, through every way a job can finish or leave it, and through folds."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.migrations import available_migrations, migrate
from easyclaw.core.models import JobStatus, Outcome, QueueStats

Conn = psycopg.AsyncConnection[Any]
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


async def counted(conn: Conn) -> dict[str, int]:
    """The truth: finished jobs by status, counted row by row."""
    cursor = await conn.execute(
        "SELECT status, count(*) FROM jobs WHERE status = ANY(%s) GROUP BY status",
        (list(TERMINAL),),
    )
    found = {status: int(count) for status, count in await cursor.fetchall()}
    return {status: found.get(status, 0) for status in TERMINAL}


def totals(stats: QueueStats) -> dict[str, int]:
    return {"COMPLETED": stats.completed, "FAILED": stats.failed, "CANCELLED": stats.cancelled}


async def assert_exact(conn: Conn) -> dict[str, int]:
    truth = await counted(conn)
    assert totals(await queue.queue_stats(conn)) == truth
    return truth


async def claim(conn: Conn, worker: str, limit: int = 10, lease: float = 30.0) -> list[Any]:
    return await queue.claim_jobs(
        conn, worker_id=worker, types=["ECHO"], limit=limit, lease_seconds=lease
    )


async def test_totals_follow_finish_retry_cancel_reap_and_retention(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    await queue.enqueue_many(conn, user_id="alice", type="ECHO", payloads=[{}] * 40)
    assert await assert_exact(conn) == dict.fromkeys(TERMINAL, 0)

    jobs = await claim(conn, "w1", limit=8)
    await queue.finish_jobs(
        conn,
        worker_id="w1",
        outcomes=[
            Outcome(job_id=jobs[0].id, attempt=1, status=JobStatus.COMPLETED, result={}),
            Outcome(job_id=jobs[1].id, attempt=1, status=JobStatus.COMPLETED, result={}),
            Outcome(job_id=jobs[2].id, attempt=1, status=JobStatus.FAILED, error="boom"),
            # a retry is not finished: it must not count
            Outcome(job_id=jobs[3].id, attempt=1, status=JobStatus.PENDING, retry_delay=0),
        ],
    )
    assert await assert_exact(conn) == {"COMPLETED": 2, "FAILED": 1, "CANCELLED": 0}

    # A fenced (rejected) duplicate completion changes nothing.
    await queue.finish_jobs(
        conn,
        worker_id="w1",
        outcomes=[Outcome(job_id=jobs[0].id, attempt=1, status=JobStatus.FAILED, error="late")],
    )
    await assert_exact(conn)

    # Cancel: a PENDING job at once, a RUNNING one when its worker reports it.
    pending = await queue.list_jobs(conn, user_id="alice", limit=1, status=JobStatus.PENDING)
    await queue.cancel_job(conn, job_id=pending[0].id, user_id="alice")
    await queue.cancel_job(conn, job_id=jobs[4].id, user_id="alice")
    await queue.finish_jobs(
        conn,
        worker_id="w1",
        outcomes=[Outcome(job_id=jobs[4].id, attempt=1, status=JobStatus.CANCELLED)],
    )
    assert await assert_exact(conn) == {"COMPLETED": 2, "FAILED": 1, "CANCELLED": 2}

    # Reap: expired leases go back to PENDING, or FAILED on their last attempt.
    await conn.execute("UPDATE jobs SET max_attempts = 1 WHERE id = %s", (jobs[5].id,))
    await conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        ([jobs[5].id, jobs[6].id],),
    )
    reaped = await queue.reap_expired_leases(conn)
    assert {job.status for job in reaped} == {JobStatus.FAILED, JobStatus.PENDING}
    assert await assert_exact(conn) == {"COMPLETED": 2, "FAILED": 2, "CANCELLED": 2}

    # Shutdown hands jobs back without finishing them.
    await queue.release_jobs(conn, worker_id="w1", job_ids=[jobs[7].id])
    await assert_exact(conn)

    # Retention deletes old finished jobs; a fold in between changes no total.
    more = await claim(conn, "w2", limit=20)
    await queue.finish_jobs(
        conn,
        worker_id="w2",
        outcomes=[
            Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result={})
            for job in more
        ],
    )
    await conn.execute(
        "UPDATE jobs SET finished_at = now() - interval '3 days' WHERE id = ANY(%s)",
        ([job.id for job in more[:15]],),
    )
    before_fold = await assert_exact(conn)
    assert await queue.fold_job_status_changes(conn) > 0
    assert await assert_exact(conn) == before_fold
    deleted = await queue.delete_finished_jobs(conn, older_than_seconds=86400, batch_size=4)
    assert deleted == 15
    after = await assert_exact(conn)
    assert after["COMPLETED"] == before_fold["COMPLETED"] - 15
    await queue.fold_job_status_changes(conn)
    assert await assert_exact(conn) == after

    # Rows written or removed by hand (psql) are counted too; TRUNCATE resets.
    await conn.execute("DELETE FROM jobs WHERE status = 'FAILED'")
    await conn.execute(
        "INSERT INTO jobs (user_id, type, status, finished_at) "
        "SELECT 'alice', 'ECHO', 'CANCELLED', now() - n * interval '1 hour' "
        "FROM generate_series(1, 7) AS n"
    )
    await assert_exact(conn)
    await conn.execute("TRUNCATE jobs CASCADE")
    assert await assert_exact(conn) == dict.fromkeys(TERMINAL, 0)


async def test_recent_counts_are_those_of_the_last_minutes(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    await conn.execute(
        "INSERT INTO jobs (user_id, type, status, error, finished_at) VALUES "
        "('alice', 'ECHO', 'FAILED', 'x', now() - interval '2 minutes'), "
        "('alice', 'ECHO', 'FAILED', 'x', now() - interval '7 minutes'), "
        "('alice', 'ECHO', 'FAILED', 'x', now() - interval '2 hours'), "
        "('alice', 'ECHO', 'COMPLETED', NULL, now() - interval '10 seconds'), "
        "('alice', 'ECHO', 'COMPLETED', NULL, now() - interval '3 minutes')"
    )
    for _ in range(2):  # before and after a fold
        stats = await queue.queue_stats(conn)
        assert (stats.failed, stats.completed) == (3, 2)
        assert (stats.recent_failures, stats.completed_last_minute) == (1, 1)
        await queue.fold_job_status_changes(conn)


async def test_totals_stay_exact_under_concurrent_workers_and_folds(database_url: str) -> None:
    """Six connections claim and finish batches while two others fold all the time."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await queue.ensure_user(conn, "alice")
        await queue.enqueue_many(conn, user_id="alice", type="ECHO", payloads=[{}] * 1200)
    done = asyncio.Event()

    async def worker(name: str) -> None:
        statuses = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            round_ = 0
            while batch := await claim(c, name, limit=13):
                round_ += 1
                await queue.finish_jobs(
                    c,
                    worker_id=name,
                    outcomes=[
                        Outcome(
                            job_id=job.id,
                            attempt=job.attempt,
                            status=statuses[(i + round_) % 4],
                            retry_delay=0,
                        )
                        for i, job in enumerate(batch)
                    ],
                )

    async def folder() -> int:
        folds = 0
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            while not done.is_set():
                folds += await queue.fold_job_status_changes(c) > 0
                await asyncio.sleep(0)
        return folds

    folders = [asyncio.create_task(folder()) for _ in range(2)]
    await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    done.set()
    assert sum(await asyncio.gather(*folders)) > 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        truth = await assert_exact(conn)
        assert sum(truth.values()) == 1200
        await queue.fold_job_status_changes(conn)
        assert await assert_exact(conn) == truth


async def test_migration_counts_the_jobs_already_finished(empty_database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in available_migrations():
            if migration.version < 5:
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        await queue.ensure_user(conn, "alice")
        await conn.execute(
            "INSERT INTO jobs (user_id, type, status, finished_at) "
            "SELECT 'alice', 'ECHO', CASE WHEN n % 3 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, "
            "now() - n * interval '1 minute' + interval '30 seconds' "
            "FROM generate_series(1, 30) AS n"
        )
        applied = await migrate(empty_database_url)
        assert [m.version for m in applied if m.version == 5] == [5]
        stats = await queue.queue_stats(conn)
        assert (stats.completed, stats.failed, stats.cancelled) == (20, 10, 0)
        assert stats.completed_last_minute == 1  # the one of 30 s ago


async def stats_buffers(conn: Conn) -> int:
    """Shared buffers (pages) one queue_stats reads, by EXPLAIN (ANALYZE, BUFFERS)."""
    from easyclaw.core.queries import query

    cursor = await conn.execute(
        b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query("queue_stats").encode(),
        {"worker_alive_seconds": 60},
    )
    row = await cursor.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


@pytest.mark.slow
async def test_stats_read_the_same_pages_with_no_or_100k_finished_jobs(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    await queue.enqueue_many(conn, user_id="alice", type="ECHO", payloads=[{}] * 50)
    await conn.execute("VACUUM ANALYZE jobs")
    empty = await stats_buffers(conn)
    await conn.execute(
        "INSERT INTO jobs (user_id, type, status, finished_at) "
        "SELECT 'alice', 'ECHO', 'COMPLETED', now() - interval '2 days' "
        "FROM generate_series(1, 100000)"
    )
    await queue.fold_job_status_changes(conn)
    await conn.execute("VACUUM ANALYZE jobs")
    assert (await queue.queue_stats(conn)).completed == 100_000
    # Counting 100k finished rows would read hundreds of index pages.
    assert await stats_buffers(conn) <= empty + 10
