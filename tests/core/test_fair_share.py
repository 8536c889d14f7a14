"""Fair share and per-user limits in the claim, against a real PostgreSQL.

A claim shares its jobs round-robin between the users with ready jobs, starting
after the user the previous claim ended with, and keeps each user's own
priority order; a user with a limit never has more RUNNING jobs than it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome

Conn = psycopg.AsyncConnection[Any]


async def backlog(conn: Conn, user: str, count: int, **kwargs: Any) -> None:
    await queue.ensure_user(conn, user)
    await queue.enqueue_many(
        conn, user_id=user, type="ECHO", payloads=[{"i": i} for i in range(count)], **kwargs
    )


async def claim(conn: Conn, limit: int, cursor: str = "", **kwargs: Any) -> queue.Claim:
    return await queue.claim(
        conn,
        worker_id="w1",
        types=["ECHO"],
        limit=limit,
        lease_seconds=30,
        cursor=cursor,
        **kwargs,
    )


def per_user(jobs: list[ClaimedJob]) -> dict[str, int]:
    return dict(Counter(job.user_id for job in jobs))


async def finish(conn: Conn, *jobs: ClaimedJob) -> None:
    outcomes = [
        Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED) for job in jobs
    ]
    assert len(await queue.finish_jobs(conn, worker_id="w1", outcomes=outcomes)) == len(jobs)


async def test_a_claim_is_shared_evenly_between_users_with_ready_jobs(conn: Conn) -> None:
    await backlog(conn, "alice", 50)  # submitted first, and far more
    await backlog(conn, "bob", 50)
    await backlog(conn, "carol", 2)
    first = await claim(conn, limit=6)
    assert per_user(first.jobs) == {"alice": 2, "bob": 2, "carol": 2}
    # carol has none left: alice and bob split the next claim.
    second = await claim(conn, limit=6, cursor=first.ring_end or "")
    assert per_user(second.jobs) == {"alice": 3, "bob": 3}


async def test_today_a_big_backlog_takes_every_slot_without_fair_share(conn: Conn) -> None:
    await backlog(conn, "alice", 50)
    await backlog(conn, "bob", 5)
    claimed = await claim(conn, limit=6, fair_share=False)
    assert per_user(claimed.jobs) == {"alice": 6}


async def test_the_remainder_rotates_so_every_user_is_served_in_turn(conn: Conn) -> None:
    for user in ("alice", "bob", "carol"):
        await backlog(conn, user, 10)
    served: list[list[str]] = []
    cursor = ""
    for _ in range(3):
        claimed = await claim(conn, limit=2, cursor=cursor)
        cursor = claimed.ring_end or ""
        served.append(sorted(job.user_id for job in claimed.jobs))
    assert served == [["alice", "bob"], ["alice", "carol"], ["bob", "carol"]]


async def test_priority_is_kept_within_a_user(conn: Conn) -> None:
    await backlog(conn, "alice", 3, priority=0)
    await backlog(conn, "alice", 1, priority=9)
    await backlog(conn, "bob", 3)
    claimed = await claim(conn, limit=2)
    mine = [job for job in claimed.jobs if job.user_id == "alice"]
    assert [job.priority for job in mine] == [9]


async def test_a_claim_visits_at_most_limit_users_and_asks_for_more(conn: Conn) -> None:
    users = [f"user-{n:03d}" for n in range(30)]
    for user in users:
        await backlog(conn, user, 1)
    seen: list[str] = []
    cursor = ""
    while True:
        claimed = await claim(conn, limit=4, cursor=cursor)
        if not claimed.jobs:
            break
        assert len(claimed.jobs) == 4 or not claimed.more
        seen += [job.user_id for job in claimed.jobs]
        cursor = claimed.ring_end or ""
    assert sorted(seen) == users
    assert seen == users  # in ring order, each once


async def test_the_per_user_limit_caps_running_jobs(conn: Conn) -> None:
    await backlog(conn, "alice", 10)
    await backlog(conn, "bob", 10)
    first = await claim(conn, limit=10, user_max_running=2)
    assert per_user(first.jobs) == {"alice": 2, "bob": 2}
    assert all(job.user_limited for job in first.jobs)
    assert (await claim(conn, limit=10, user_max_running=2)).jobs == []
    await finish(conn, next(job for job in first.jobs if job.user_id == "bob"))
    again = await claim(conn, limit=10, user_max_running=2)
    assert per_user(again.jobs) == {"bob": 1}


async def test_users_max_running_overrides_the_setting(conn: Conn) -> None:
    await backlog(conn, "alice", 10)
    await backlog(conn, "bob", 10)
    await conn.execute("UPDATE users SET max_running = 1 WHERE id = 'alice'")
    await conn.execute("UPDATE users SET max_running = 0 WHERE id = 'bob'")  # 0: no limit
    claimed = await claim(conn, limit=10, user_max_running=3)
    assert per_user(claimed.jobs) == {"alice": 1, "bob": 9}
    assert {job.user_id: job.user_limited for job in claimed.jobs} == {
        "alice": True,
        "bob": False,
    }


async def test_a_user_whose_row_another_claim_holds_is_skipped_this_time(
    conn: Conn, database_url: str
) -> None:
    await backlog(conn, "alice", 5)
    await backlog(conn, "bob", 5)
    async with await psycopg.AsyncConnection.connect(database_url) as other, other.transaction():
        await other.execute("SELECT FROM users WHERE id = 'alice' FOR UPDATE")
        claimed = await claim(conn, limit=4, user_max_running=3)
        assert per_user(claimed.jobs) == {"bob": 3}
    claimed = await claim(conn, limit=4, user_max_running=3)
    assert per_user(claimed.jobs) == {"alice": 3}


async def test_a_limited_users_claim_moves_its_claim_version(conn: Conn) -> None:
    await backlog(conn, "alice", 5)
    await backlog(conn, "bob", 5)
    await claim(conn, limit=4, user_max_running=1)
    cursor = await conn.execute("SELECT id, claim_version FROM users ORDER BY id")
    assert await cursor.fetchall() == [("alice", 1), ("bob", 1)]
    await claim(conn, limit=4)  # no limit: nothing to count, nothing bumped
    cursor = await conn.execute("SELECT id, claim_version FROM users ORDER BY id")
    assert await cursor.fetchall() == [("alice", 1), ("bob", 1)]


async def test_next_claim_at_does_not_count_jobs_of_users_at_their_limit(conn: Conn) -> None:
    await backlog(conn, "alice", 3)
    await claim(conn, limit=10, user_max_running=2)
    assert (
        await queue.next_claim_at(conn, types=["ECHO"], user_limits=True, user_max_running=2)
        is None
    )
    assert await queue.next_claim_at(conn, types=["ECHO"]) is not None  # limits off: ready


async def test_keys_hold_within_a_fair_claim(conn: Conn) -> None:
    await backlog(conn, "alice", 4, concurrency_keys=["k"] * 4)
    await backlog(conn, "bob", 2)
    claimed = await claim(conn, limit=6)
    assert per_user(claimed.jobs) == {"alice": 1, "bob": 2}


@pytest.mark.parametrize("fair_share", [True, False])
async def test_scheduled_jobs_wait_for_their_run_at_in_both_orders(
    conn: Conn, fair_share: bool
) -> None:
    await queue.ensure_user(conn, "alice")
    cursor = await conn.execute("SELECT now() + interval '1 hour'")
    later = (await cursor.fetchone())[0]  # type: ignore[index]
    await queue.enqueue(conn, user_id="alice", type="ECHO", payload={}, run_at=later)
    assert (await claim(conn, limit=5, fair_share=fair_share)).jobs == []


async def test_what_limited_users_cannot_take_goes_to_the_others(conn: Conn) -> None:
    for user, limit in (("a", 1), ("b", 2), ("c", None), ("d", None)):
        await backlog(conn, user, 10)
        await conn.execute("UPDATE users SET max_running = %s WHERE id = %s", (limit, user))
    claimed = await claim(conn, limit=10)
    assert per_user(claimed.jobs) == {"a": 1, "b": 2, "c": 4, "d": 3}
    assert claimed.more  # c and d have more
