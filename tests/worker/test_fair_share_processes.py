"""Fair share and per-user limits with real worker processes.

Fairness bound. With U users holding ready jobs, every claim splits its slots
evenly between them, so while two users compete each gets half of the slots
that come free. User A submits 5,000 jobs of 50 ms, then user B 50; on 2
workers x 16 slots, slots come free at 32 / 50 ms = 640 per second, B gets
half of them, and B's 50 jobs need about 50 / 320 s + one job's 50 ms = 0.2 s.
The test allows 3 s (a machine shared with other work) and checks that B did
not wait for A: most of A's jobs are still waiting when B's last one is done
(without fair share B starts only after all of A's, some 7.8 s of work).

Per-user limits are sampled: while the workers run, the RUNNING jobs of each
user are counted every few milliseconds and never exceed that user's limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from easyclaw.core import queue
from tests.support.processes import WorkerProcesses
from tests.worker.helpers import Conn, db_now, fetch_all, fetch_value, registered_worker

JOB_SECONDS = 0.05
B_BOUND_SECONDS = 3.0


async def bulk(conn: Conn, user: str, count: int, seconds: float) -> None:
    await queue.ensure_user(conn, user)
    await queue.enqueue_many(
        conn, user_id=user, type="SLEEP", payloads=[{"seconds": seconds}] * count
    )


async def test_a_users_50_jobs_finish_long_before_another_users_5000(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    worker_processes.start(2, EASYCLAW_WORKER_CONCURRENCY="16")
    for index in range(2):
        await registered_worker(conn, f"test-worker-{index}")
    await bulk(conn, "user-a", 5000, JOB_SECONDS)
    running_a = "SELECT count(*) FROM jobs WHERE user_id = 'user-a' AND status = 'RUNNING'"

    async def a_fills_the_workers() -> bool:
        return bool(await fetch_value(conn, running_a) >= 24)

    deadline = time.monotonic() + 30
    while not await a_fills_the_workers():
        assert time.monotonic() < deadline, "user A's jobs never filled the workers"
        await asyncio.sleep(0.02)
    submitted_at = await db_now(conn)
    await bulk(conn, "user-b", 50, JOB_SECONDS)

    done_b = "SELECT count(*) FROM jobs WHERE user_id = 'user-b' AND status = 'COMPLETED'"
    deadline = time.monotonic() + 60
    while await fetch_value(conn, done_b) < 50:
        assert time.monotonic() < deadline, "user B's jobs did not finish"
        await asyncio.sleep(0.02)
    b_done_at = await fetch_value(
        conn, "SELECT max(finished_at) FROM jobs WHERE user_id = 'user-b'"
    )
    a_done_meanwhile = await fetch_value(
        conn,
        "SELECT count(*) FROM jobs WHERE user_id = 'user-a' AND status = 'COMPLETED' "
        "AND finished_at <= %s",
        (b_done_at,),
    )
    waited = (b_done_at - submitted_at).total_seconds()
    print(f"B's last job finished {waited:.3f} s after B submitted; A finished {a_done_meanwhile}")
    assert a_done_meanwhile < 1000, f"B waited for {a_done_meanwhile} of A's jobs"
    assert waited < B_BOUND_SECONDS


async def test_running_jobs_of_a_user_never_exceed_its_limit(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    # 3 workers x 8 slots, far more than the limits: the limits are what binds.
    worker_processes.start(3, EASYCLAW_WORKER_CONCURRENCY="8", EASYCLAW_USER_MAX_RUNNING="4")
    for index in range(3):
        await registered_worker(conn, f"test-worker-{index}")
    # Overrides are in place before the users' jobs exist, so no claim can see
    # a job of theirs under the setting's limit instead of their own.
    for user, limit in (("override", 2), ("free", 0)):  # 0: no limit
        await queue.ensure_user(conn, user)
        await conn.execute("UPDATE users SET max_running = %s WHERE id = %s", (limit, user))
    await bulk(conn, "capped", 150, 0.02)  # the setting's limit: 4
    await bulk(conn, "override", 60, 0.02)
    await bulk(conn, "free", 20, 0.02)

    peaks: dict[str, int] = defaultdict(int)
    samples = 0
    started = time.monotonic()
    while True:
        rows = await fetch_all(
            conn, "SELECT user_id, count(*) FROM jobs WHERE status = 'RUNNING' GROUP BY 1"
        )
        samples += 1
        for user, running in rows:
            peaks[user] = max(peaks[user], running)
        if not rows and not await fetch_value(
            conn, "SELECT count(*) FROM jobs WHERE status <> 'COMPLETED'"
        ):
            break
        assert time.monotonic() - started < 60, "the jobs did not finish"
    elapsed = time.monotonic() - started
    apart_ms = 1000 * elapsed / samples
    print(f"{samples} samples in {elapsed:.2f} s ({apart_ms:.1f} ms apart): {dict(peaks)}")
    assert peaks["capped"] == 4
    assert peaks["override"] == 2
    assert peaks["free"] > 4, "a user without a limit was held back"
    assert elapsed / samples < 0.02, "sampled too rarely to show anything"
