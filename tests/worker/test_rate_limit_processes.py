"""A fleet-wide rate limit with real worker processes and a real (fake) provider.

Four workers with 16 slots each run 40 CHAT jobs against a local
OpenAI-compatible server while EASYCLAW_RATE_LIMITS says provider:openai=8/s
with a burst of 2; the fleet could send all 40 at once. The guarantee: in any
window of t seconds at most burst + rate x t jobs start (PostgreSQL's
started_at, checked for every window between two starts). The provider sees
the same, give or take how much later one worker sends its request after the
start than another (measured per job: on a quiet machine a few milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from easyclaw.core import queue
from tests.support.openai_server import OpenAICompatibleServer, openai_compatible_server
from tests.support.processes import WorkerProcesses
from tests.worker.helpers import Conn, fetch_all, fetch_value, registered_worker

RATE, BURST, JOBS = 8.0, 2, 40


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_compatible_server() as running:
        yield running


async def test_four_workers_never_call_the_provider_faster_than_its_limit(
    worker_processes: WorkerProcesses, conn: Conn, server: OpenAICompatibleServer
) -> None:
    worker_processes.start(
        4,
        EASYCLAW_WORKER_CONCURRENCY="16",
        EASYCLAW_CHAT_PROVIDER="openai",
        EASYCLAW_CHAT_MODEL="test-model",
        EASYCLAW_OPENAI_BASE_URL=server.url,
        EASYCLAW_OPENAI_API_KEY="sk-test",
        EASYCLAW_RATE_LIMITS=f"provider:openai={RATE:g}/s;burst={BURST}",
    )
    for index in range(4):
        await registered_worker(conn, f"test-worker-{index}")
    configured = "SELECT count(*) FROM rate_limit_types WHERE bucket = 'provider:openai'"
    deadline = time.monotonic() + 20
    while not await fetch_value(conn, configured):
        assert time.monotonic() < deadline, "the workers did not configure the rate limit"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1 / RATE * BURST)  # let the bucket fill to its burst
    await queue.ensure_user(conn, "chatty")
    await queue.enqueue_many(
        conn,
        user_id="chatty",
        type="CHAT",
        payloads=[{"message": f"question {n}"} for n in range(JOBS)],
    )
    deadline = time.monotonic() + 60
    while await fetch_value(conn, "SELECT count(*) FROM jobs WHERE status = 'COMPLETED'") < JOBS:
        assert time.monotonic() < deadline, "the CHAT jobs did not finish"
        await asyncio.sleep(0.1)

    # Every start, as the database recorded it: no window holds more than allowed.
    starts = [row[0] for row in await fetch_all(conn, "SELECT started_at FROM jobs ORDER BY 1")]
    assert len(starts) == JOBS
    for first in range(JOBS):
        for last in range(first, JOBS):
            window = (starts[last] - starts[first]).total_seconds()
            assert last - first + 1 <= BURST + RATE * window + 1e-6, (
                f"{last - first + 1} starts within {window:.3f} s"
            )
    # What the provider saw. A request leaves its worker a little after the start
    # (a busy process sends later), so the provider's windows are widened by the
    # spread of that delay, measured per job (same machine, same clock).
    started = {
        payload["message"]: started_at.timestamp()
        for payload, started_at in await fetch_all(
            conn, "SELECT input_payload, started_at FROM jobs"
        )
    }
    delays = [
        arrived - started[request["messages"][-1]["content"]]
        for request, arrived in zip(server.requests, server.arrivals, strict=True)
    ]
    spread = max(delays) - min(delays)
    arrivals = sorted(server.arrivals)
    assert len(arrivals) == JOBS
    for first in range(JOBS):
        for last in range(first, JOBS):
            window = arrivals[last] - arrivals[first]
            assert last - first + 1 <= BURST + RATE * (window + spread) + 1e-6
    busiest = max(
        sum(1 for other in arrivals if start <= other < start + 1.0) for start in arrivals
    )
    print(
        f"provider: busiest second {busiest} requests, span {arrivals[-1] - arrivals[0]:.2f} s,"
        f" start-to-request delay {min(delays) * 1000:.0f}-{max(delays) * 1000:.0f} ms"
    )
    assert arrivals[-1] - arrivals[0] >= (JOBS - BURST) / RATE - spread
    assert await fetch_value(conn, "SELECT max(attempts) FROM jobs") == 1
