"""A worker told to stop returns promptly, whenever the signal arrives (in-process, real database).

``easyclaw up`` restarts a killed worker and may stop it again a few
milliseconds later; Kubernetes sends SIGTERM to a pod that has just
started. A stop that lands while the worker is still writing its start-up
state must not leave it asleep for a whole poll interval.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import load_registry
from easyclaw.worker.runner import Worker
from tests.support.settings import make_settings

# Far longer than a prompt stop takes: a worker that sleeps it out has missed the stop.
LONG_POLL = 60.0


@pytest.mark.parametrize("loop_turns", [0, 1, 2, 5, 10, 20])
async def test_a_stop_during_start_up_returns_promptly(
    database_url: str, pool: AsyncPool, loop_turns: int
) -> None:
    settings = make_settings(database_url, worker_poll_interval_seconds=LONG_POLL)
    worker = Worker(settings, load_registry(settings), pool)
    task = asyncio.create_task(worker.run())
    for _ in range(loop_turns):  # let start-up get that far (its first statements are in flight)
        await asyncio.sleep(0)
    worker.stop()
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):
            await task
    except TimeoutError:
        raise AssertionError(
            f"the worker stopped after {loop_turns} loop turns was still running after 10 s"
        ) from None
    assert time.monotonic() - started < 5
