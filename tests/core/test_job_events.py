"""Job events (``easyclaw_job_events``) are sent for the jobs someone follows.

A NOTIFY makes its transaction take a database-wide lock at commit, so claims
and completions notify only jobs marked by ``queue.watch_jobs`` (long-poll
waiters, the operator's followers), and a fleet draining unwatched jobs sends
none. Rare changes (cancel, release, reaping) notify every job.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.models import JobStatus, Outcome

Conn = psycopg.AsyncConnection[Any]
USER = "alice"


@pytest.fixture
async def listener(database_url: str) -> Any:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("LISTEN easyclaw_job_events")
        yield conn


async def notified_ids(listener: Conn) -> set[str]:
    """Every job id notified so far (the sender has committed: they are queued)."""
    ids: set[str] = set()
    async for notify in listener.notifies(timeout=0.5):
        ids.update(notify.payload.split(","))
    return ids


async def enqueue_many(conn: Conn, count: int) -> None:
    await queue.ensure_user(conn, USER)
    await queue.enqueue_many(conn, user_id=USER, type="ECHO", payloads=[{}] * count)


@pytest.mark.parametrize("fair_share", [True, False])
async def test_claims_and_completions_notify_only_watched_jobs(
    conn: Conn, listener: Conn, fair_share: bool
) -> None:
    await enqueue_many(conn, 6)
    cursor = await conn.execute("SELECT id FROM jobs ORDER BY seq")
    ids = [row[0] for row in await cursor.fetchall()]
    watched = ids[:2]
    await queue.watch_jobs(conn, watched)
    claim = await queue.claim(
        conn,
        worker_id="w1",
        types=["ECHO"],
        limit=6,
        lease_seconds=30,
        fair_share=fair_share,
    )
    assert len(claim.jobs) == 6
    assert await notified_ids(listener) == {str(job_id) for job_id in watched}
    accepted = await queue.finish_jobs(
        conn,
        worker_id="w1",
        outcomes=[
            Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result={})
            for job in claim.jobs
        ],
    )
    assert set(accepted.values()) == {JobStatus.COMPLETED}
    assert await notified_ids(listener) == {str(job_id) for job_id in watched}


async def test_watching_a_finished_job_changes_nothing(conn: Conn) -> None:
    await enqueue_many(conn, 1)
    [job] = await queue.claim_jobs(conn, worker_id="w1", types=["ECHO"], limit=1, lease_seconds=30)
    done = Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result={})
    await queue.finish_jobs(conn, worker_id="w1", outcomes=[done])
    cursor = await conn.execute("SELECT xmin::text FROM jobs WHERE id = %s", (job.id,))
    before = await cursor.fetchone()
    await queue.watch_jobs(conn, [job.id])
    cursor = await conn.execute("SELECT xmin::text, watched FROM jobs WHERE id = %s", (job.id,))
    after = await cursor.fetchone()
    assert after == (before[0] if before else None, False)  # no new row version written


async def test_a_reaped_job_is_notified_whether_watched_or_not(conn: Conn, listener: Conn) -> None:
    await enqueue_many(conn, 1)
    [job] = await queue.claim_jobs(conn, worker_id="w1", types=["ECHO"], limit=1, lease_seconds=30)
    await notified_ids(listener)
    await conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    await queue.reap_expired_leases(conn)
    assert await notified_ids(listener) == {str(job.id)}
