"""``GET /jobs/{id}?wait=N`` answers as soon as the job finishes, or after N seconds."""

from __future__ import annotations

import asyncio
import time

import httpx

from easyclaw.worker.runner import Worker
from tests.api.conftest import assert_error, read, submit


async def timed_read(
    client: httpx.AsyncClient, job_id: str, wait: float | None
) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    job = await read(client, job_id, **({} if wait is None else {"wait": wait}))
    return job, time.monotonic() - started


async def test_a_long_poll_returns_as_soon_as_a_worker_finishes_the_job(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    job_id = await submit(client, {"type": "SLEEP", "payload": {"seconds": 1}})
    job, elapsed = await timed_read(client, job_id, wait=10)
    assert job["status"] == "COMPLETED"
    assert job["result"] == {"slept": 1, "attempt": 1}
    # It waited for the one-second job, and was woken by its completion rather than
    # by the periodic re-check (every 5 s) or the end of the wait.
    assert 0.8 <= elapsed < 4.0, elapsed


async def test_every_long_poll_on_the_job_is_woken(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    job_id = await submit(client, {"type": "SLEEP", "payload": {"seconds": 1}})
    polls = await asyncio.gather(*(timed_read(client, job_id, wait=10) for _ in range(5)))
    for job, elapsed in polls:
        assert job["status"] == "COMPLETED"
        assert elapsed < 4.0, elapsed


async def test_a_long_poll_on_a_finished_job_returns_at_once(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    job_id = await submit(client)
    assert (await read(client, job_id, wait=10))["status"] == "COMPLETED"
    job, elapsed = await timed_read(client, job_id, wait=30)
    assert job["status"] == "COMPLETED"
    assert elapsed < 1.0, elapsed


async def test_a_long_poll_returns_the_unfinished_job_when_the_wait_runs_out(
    client: httpx.AsyncClient,
) -> None:
    job_id = await submit(client)  # no worker: it stays PENDING
    job, elapsed = await timed_read(client, job_id, wait=0.5)
    assert job["status"] == "PENDING"
    assert 0.45 <= elapsed < 1.5, elapsed
    for wait in (None, 0):  # no wait: answer at once
        job, elapsed = await timed_read(client, job_id, wait=wait)
        assert job["status"] == "PENDING"
        assert elapsed < 0.5, elapsed


async def test_wait_must_be_between_0_and_60_seconds(client: httpx.AsyncClient) -> None:
    job_id = await submit(client)
    for wait in ["61", "60.5", "-1", "nan", "inf", "soon"]:
        response = await client.get(f"/jobs/{job_id}", params={"wait": wait})
        error = assert_error(response, 422, "VALIDATION_ERROR")
        assert "wait" in error["message"]
