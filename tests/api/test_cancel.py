"""``POST /jobs/{id}/cancel``: pending jobs stop at once, running ones by their worker."""

from __future__ import annotations

import time

import httpx

from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.worker.runner import Worker
from tests.api.conftest import assert_error, read, running_worker, submit
from tests.support.waiting import wait_for


async def test_cancelling_a_pending_job_is_immediate(client: httpx.AsyncClient) -> None:
    job_id = await submit(client)
    response = await client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["id"] == job_id
    assert job["status"] == "CANCELLED"
    assert job["cancelRequested"] is True
    assert job["finishedAt"] is not None
    assert (await read(client, job_id))["status"] == "CANCELLED"


async def test_a_cancelled_pending_job_never_runs(
    client: httpx.AsyncClient, settings: Settings, registry: JobTypeRegistry, pool: AsyncPool
) -> None:
    cancelled = await submit(client, {"type": "ECHO", "payload": {"n": 1}, "priority": 5})
    assert (await client.post(f"/jobs/{cancelled}/cancel")).status_code == 200
    later = await submit(client, {"type": "ECHO", "payload": {"n": 2}})
    async with running_worker(settings, registry, pool):
        assert (await read(client, later, wait=10))["status"] == "COMPLETED"
    job = await read(client, cancelled)
    assert (job["status"], job["attempts"], job["result"]) == ("CANCELLED", 0, None)


async def test_cancelling_a_running_job_is_accepted_and_its_worker_stops_it(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    job_id = await submit(client, {"type": "SLEEP", "payload": {"seconds": 30}})

    async def running() -> bool:
        return (await read(client, job_id))["status"] == "RUNNING"

    await wait_for(running, timeout=10)
    response = await client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "RUNNING"
    assert accepted["cancelRequested"] is True

    started = time.monotonic()
    job = await read(client, job_id, wait=10)
    assert job["status"] == "CANCELLED"
    assert time.monotonic() - started < 4.0  # stopped promptly, not after its 30 s sleep
    assert job["result"] is None
    assert job["finishedAt"] is not None
    await wait_for(lambda: worker.busy == 0, timeout=5)  # its slot is free again


async def test_a_finished_job_cannot_be_cancelled(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    completed = await submit(client)
    failed = await submit(client, {"type": "FAIL", "payload": {}})
    cancelled = await submit(
        client, {"type": "SLEEP", "payload": {"seconds": 1}, "runAt": "2999-01-01T00:00:00Z"}
    )
    assert (await client.post(f"/jobs/{cancelled}/cancel")).status_code == 200
    for job_id, status in [(completed, "COMPLETED"), (failed, "FAILED"), (cancelled, "CANCELLED")]:
        assert (await read(client, job_id, wait=10))["status"] == status
        error = assert_error(
            await client.post(f"/jobs/{job_id}/cancel"), 409, "JOB_ALREADY_FINISHED"
        )
        assert status in error["message"]
        assert (await read(client, job_id))["status"] == status  # unchanged
