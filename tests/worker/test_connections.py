"""A worker process holds at most two database connections, idle or busy:
one that claims, completes, heartbeats, maintains and serves handlers' queries,
and one that LISTENs. Counted in pg_stat_activity by application name."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from easyclaw.core import queue
from easyclaw.core.models import JobStatus
from tests.support.processes import WorkerProcesses
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    enqueue,
    fetch_all,
    registered_worker,
    wait_all_finished,
    wait_status,
)


async def worker_connections(conn: Conn) -> Counter[str]:
    rows = await fetch_all(
        conn,
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'easyclaw-worker%%'",
    )
    return Counter(name for (name,) in rows)


async def running_jobs(conn: Conn) -> int:
    rows = await fetch_all(conn, "SELECT count(*) FROM jobs WHERE status = 'RUNNING'")
    return int(rows[0][0])


@pytest.mark.usefixtures("effects_table")
async def test_a_worker_holds_two_connections_idle_and_busy(
    conn: Conn, worker_processes: WorkerProcesses
) -> None:
    worker_processes.start(1, EASYCLAW_WORKER_CONCURRENCY="32")
    await registered_worker(conn, "test-worker-0")

    async def listening() -> Counter[str] | None:
        found = await worker_connections(conn)
        return found if found["easyclaw-worker-listener"] == 1 else None

    idle = await wait_for(listening)
    assert idle == Counter({"easyclaw-worker": 1, "easyclaw-worker-listener": 1})

    # Busy: handlers that sleep (32 at a time), write effects in the completion
    # transaction, and read a conversation's history through ctx.pool (CHAT).
    first_chat = await enqueue(conn, "CHAT", {"message": "hello"})
    await wait_status(conn, first_chat.id, JobStatus.COMPLETED)
    await queue.enqueue_many(conn, user_id=USER, type="SLEEP", payloads=[{"seconds": 0.05}] * 400)
    await queue.enqueue_many(conn, user_id=USER, type="EFFECT", payloads=[{}] * 200)
    for n in range(60):
        await enqueue(conn, "CHAT", {"message": f"more {n}"}, conversation_id=first_chat.id)

    samples: list[Counter[str]] = []
    most_running = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal most_running
        while not done.is_set():
            samples.append(await worker_connections(conn))
            most_running = max(most_running, await running_jobs(conn))
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        counts = await wait_all_finished(conn, 1 + 400 + 200 + 60, timeout=90)
    finally:
        done.set()
        await sampler
    assert counts == {"COMPLETED": 661}
    assert most_running >= 16, "the worker was never busy while we sampled"
    assert len(samples) > 20
    assert max(sum(sample.values()) for sample in samples) <= 2, samples
    assert max(sample["easyclaw-worker-listener"] for sample in samples) <= 1
