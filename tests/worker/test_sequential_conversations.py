"""The turns of a conversation run one at a time, in submission order, on real
worker processes: 4 workers with 16 slots each, while workers are SIGKILLed
mid-turn and restarted (their turns come back when the lease expires).

Each turn records when its attempt started and ended (``turn_runs``), and a
killed attempt ended when its process died; per conversation those intervals
must not overlap and must follow the order the turns were submitted in.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import defaultdict
from datetime import datetime
from uuid import UUID

import pytest

from easyclaw.agents.submission import JobRequest, KnownUsers, submit_job
from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.models import Job
from tests.support.jobtypes import TURN_RUNS_TABLE
from tests.support.processes import WorkerProcesses
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    db_now,
    effects_per_job,
    fetch_all,
    fetch_value,
    registered_worker,
    wait_all_finished,
)

CONVERSATIONS = 32
TURNS = 8
TURN_SECONDS = 0.3
LEASE = 2.0


@pytest.fixture
async def turn_runs(conn: Conn) -> None:
    await conn.execute(TURN_RUNS_TABLE.encode())


async def submit_conversations(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings
) -> dict[UUID, list[UUID]]:
    """CONVERSATIONS conversations of TURNS turns, submitted interleaved: turn 1 of
    each, then turn 2 of each, ... (the way many users chatting at once would),
    through the API's and the operator's submission path."""
    users = KnownUsers()

    async def submit(conversation: UUID | None) -> Job:
        request = JobRequest(
            user_id=USER,
            type="TURN",
            payload={"seconds": TURN_SECONDS},
            conversation_id=conversation,
            max_attempts=10,  # a turn may be killed more than once
        )
        enqueued = await submit_job(
            pool, request, registry=registry, settings=settings, users=users
        )
        return enqueued.job

    turns: dict[UUID, list[UUID]] = {}
    for _ in range(CONVERSATIONS):
        opening = await submit(None)
        assert opening.conversation_id is not None
        turns[opening.conversation_id] = [opening.id]
    for _ in range(TURNS - 1):
        for conversation, ids in turns.items():
            ids.append((await submit(conversation)).id)
    return turns


@pytest.mark.usefixtures("effects_table", "turn_runs")
async def test_conversations_stay_sequential_on_4_workers_with_16_slots_while_killed(
    worker_processes: WorkerProcesses,
    conn: Conn,
    pool: AsyncPool,
    registry: JobTypeRegistry,
    settings: Settings,
) -> None:
    env = {
        "EASYCLAW_WORKER_CONCURRENCY": "16",
        "EASYCLAW_WORKER_LEASE_SECONDS": str(LEASE),
        "EASYCLAW_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "EASYCLAW_WORKER_MAINTENANCE_INTERVAL_SECONDS": "0.5",
    }
    turns = await submit_conversations(pool, registry, settings)
    total = CONVERSATIONS * TURNS
    worker_processes.start(4, **env)
    for index in range(4):
        await registered_worker(conn, f"test-worker-{index}")

    # Kill three workers, one after another, each while it runs turns, and start
    # a fresh one in its place. A kill's time is when its attempts ended.
    died_at: dict[str, datetime] = {}
    for _ in range(3):

        async def busy_worker() -> str | None:
            rows = await fetch_all(
                conn,
                "SELECT worker_id FROM jobs WHERE status = 'RUNNING' "
                "AND NOT worker_id = ANY(%s) "
                "GROUP BY worker_id ORDER BY count(*) DESC LIMIT 1",
                (list(died_at),),
            )
            return str(rows[0][0]) if rows else None

        victim: str = await wait_for(busy_worker, timeout=20, interval=0.02)
        # Worker ids are "<name>.<suffix>" and the names are test-worker-<index>.
        process = worker_processes.processes[int(victim.split(".")[0].rsplit("-", 1)[1])]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        died_at[victim] = await db_now(conn)
        worker_processes.start(1, **env)
        await asyncio.sleep(TURN_SECONDS / 2)

    counts = await wait_all_finished(conn, total, timeout=60)
    failures = await fetch_all(conn, "SELECT attempts, error FROM jobs WHERE status <> 'COMPLETED'")
    assert counts == {"COMPLETED": total}, failures
    assert set((await effects_per_job(conn)).values()) == {1}, "an effect was written twice"
    assert await fetch_value(conn, "SELECT count(*) FROM jobs WHERE attempts > 1") >= 3, (
        "the kills interrupted no turn: the test did not test what it says"
    )

    runs = await fetch_all(
        conn, "SELECT job_id, attempt, worker_id, started_at, ended_at FROM turn_runs"
    )
    attempts_of: dict[UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    for job_id, _attempt, worker_id, started_at, ended_at in runs:
        end = ended_at or died_at.get(worker_id)
        assert end is not None, f"attempt of {job_id} on {worker_id} never ended"
        attempts_of[job_id].append((started_at, end))
    finished_at = dict(await fetch_all(conn, "SELECT id, finished_at FROM jobs"))

    for conversation, ids in turns.items():
        intervals = sorted(
            (start, end, position)
            for position, job_id in enumerate(ids)
            for start, end in attempts_of[job_id]
        )
        for (_, end, before), (start, _, after) in itertools.pairwise(intervals):
            assert start >= end, (
                f"conversation {conversation}: turn {after + 1} started before turn "
                f"{before + 1} ended"
            )
            assert after >= before, (
                f"conversation {conversation}: turn {after + 1} ran after turn {before + 1}"
            )
        assert [finished_at[job_id] for job_id in ids] == sorted(
            finished_at[job_id] for job_id in ids
        )
    # Conversations did run side by side, more of them than one worker has slots.
    edges = sorted(
        (moment, step)
        for intervals in attempts_of.values()
        for start, end in intervals
        for moment, step in ((start, 1), (end, -1))
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak > 16, f"at most {peak} turns ran at once"
    alive = [p for p in worker_processes.processes if p.poll() is None]
    assert len(alive) == 4
