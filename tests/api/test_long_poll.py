"""``GET /jobs/{id}?wait=N`` answers as soon as the job finishes, or after N seconds."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import httpx
import orjson
import psycopg
import pytest

from easyclaw.api.state import ApiState
from easyclaw.api.waiters import JobWaiters
from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.worker.runner import Worker
from tests.api.conftest import assert_error, read, running_worker, submit
from tests.support.api_server import ApiServer, serve_api
from tests.support.settings import make_settings
from tests.support.waiting import wait_for


@asynccontextmanager
async def pool_for(settings: Settings) -> AsyncIterator[AsyncPool]:
    pool = create_pool(settings, application_name="easyclaw-tests")
    await pool.open(wait=True)
    try:
        yield pool
    finally:
        await pool.close()


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


async def raw_get(base_url: str, target: str, user_id: str = "test-user-id") -> tuple[int, bytes]:
    """One GET on its own connection, without a client library's connection pool
    (httpx's pool slows down with hundreds of open connections)."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nx-user-id: {user_id}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def raise_open_file_limit(needed: int) -> None:
    """Each waiter is two sockets in this process (client and server side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


@pytest.mark.slow
async def test_many_waiters_hold_no_connection_and_ordinary_calls_stay_prompt(
    database_url: str, registry: JobTypeRegistry
) -> None:
    # A small pool that answers 503 after one second: a pool slot per waiter (the
    # old long-poll) would starve the ordinary calls and show up in its counters.
    settings = make_settings(database_url, db_pool_max_size=3, db_pool_timeout_seconds=1.0)
    waiters = 600
    raise_open_file_limit(4 * waiters + 256)
    async with serve_api(settings, registry) as api, api.client() as client:
        state: ApiState = api.server.config.app.state.easyclaw
        job_ids = [await submit(client) for _ in range(30)]  # no worker yet: PENDING
        before = state.pool.get_stats()
        polls = [
            asyncio.create_task(raw_get(api.url, f"/jobs/{job_ids[n % 30]}?wait=20"))
            for n in range(waiters)
        ]
        ordinary: list[tuple[int, float]] = []
        while len(ordinary) < 40:  # while the waiters arrive and after
            started = time.monotonic()
            response = await client.get(f"/jobs/{job_ids[len(ordinary) % 30]}")
            ordinary.append((response.status_code, time.monotonic() - started))
        await wait_for(lambda: len(api.server.server_state.tasks) >= waiters, timeout=30)
        after = state.pool.get_stats()
        assert [status for status, _ in ordinary] == [200] * 40
        # Prompt, though this one event loop also runs the 600 clients and the server
        # (bench/longpoll.py measures the latency of a real API process).
        assert max(elapsed for _, elapsed in ordinary) < 3.0, ordinary
        # The waiters read in batches, one query at a time: far fewer checkouts than
        # waiters, and never one queued behind another for a free connection.
        checkouts = after.get("requests_num", 0) - before.get("requests_num", 0)
        queued = after.get("requests_queued", 0) - before.get("requests_queued", 0)
        assert checkouts - len(ordinary) < waiters / 2, checkouts
        assert queued < 5, queued
        assert not any(poll.done() for poll in polls)

        async with pool_for(settings) as pool, running_worker(settings, registry, pool):
            started = time.monotonic()
            answers = await asyncio.gather(*polls)
            woken_after = time.monotonic() - started
    assert {status for status, _ in answers} == {200}
    assert {orjson.loads(body)["status"] for _, body in answers} == {"COMPLETED"}
    assert woken_after < 4.0, woken_after  # by the notifications, not the 5 s re-check


@pytest.mark.slow
async def test_a_waiter_answers_even_when_the_notification_is_missed(
    api: ApiServer, client: httpx.AsyncClient, conn: psycopg.AsyncConnection[Any]
) -> None:
    waiters: JobWaiters = api.server.config.app.state.easyclaw.waiters
    job_id = await submit(client)
    poll = asyncio.create_task(timed_read(client, job_id, wait=20))
    await wait_for(lambda: waiters.count == 1 and waiters.batches_read >= 1)  # read once
    # Finish the job behind the queue's back: no NOTIFY is sent.
    await conn.execute(
        "UPDATE jobs SET status = 'COMPLETED', result_payload = '{\"by\": \"hand\"}',"
        " finished_at = now() WHERE id = %s",
        (job_id,),
    )
    job, elapsed = await poll
    assert job["status"] == "COMPLETED"
    assert job["result"] == {"by": "hand"}
    assert elapsed < 8.0, elapsed  # the periodic re-check (every 5 s) found it


async def test_waiting_on_a_missing_or_foreign_job_is_a_404(api: ApiServer) -> None:
    async with api.client("alice") as alice, api.client("bob") as bob:
        job_id = await submit(alice)
        for client, missing in [(bob, job_id), (alice, str(uuid4()))]:
            response = await client.get(f"/jobs/{missing}", params={"wait": 5})
            assert_error(response, 404, "JOB_NOT_FOUND")
