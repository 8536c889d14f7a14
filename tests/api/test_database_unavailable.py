"""While PostgreSQL is down the API answers 503 quickly, and recovers by itself after.

This test runs its own PostgreSQL server, since it stops and restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.migrations import migrate
from tests.api.conftest import assert_error, read, submit
from tests.support.api_server import serve_api
from tests.support.databases import FAST_UNSAFE_SETTINGS
from tests.support.ports import free_port
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "pg", settings=FAST_UNSAFE_SETTINGS)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop, "immediate")


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_an_unreachable_database_is_a_quick_503_and_the_api_recovers(
    own_postgres: LocalPostgres,
) -> None:
    await migrate(own_postgres.url())
    # Default pool and connect timeouts.
    settings = make_settings(own_postgres.url(), api_metrics_port=free_port())
    async with serve_api(settings) as api, api.client() as client:
        before = await submit(client)

        # A restart kills every pooled connection; the pool notices on checkout,
        # so the first request afterwards already succeeds.
        await asyncio.to_thread(own_postgres.stop, "fast")
        await asyncio.to_thread(own_postgres.start)
        assert (await read(client, before))["status"] == "PENDING"

        await asyncio.to_thread(own_postgres.stop, "fast")
        outage = await asyncio.gather(
            timed(client.post("/jobs", json={"type": "ECHO", "payload": {}})),
            timed(client.get(f"/jobs/{before}")),
            timed(client.get("/jobs")),
            timed(client.get("/readyz")),
            timed(client.get("/stats")),
        )
        for response, elapsed in outage:
            error = assert_error(response, 503, "DATABASE_UNAVAILABLE")
            assert "database" in error["message"]
            assert response.headers["retry-after"] == "2"
            assert elapsed < 5.0, elapsed
        # Liveness and metrics do not depend on the database.
        assert (await client.get("/healthz")).status_code == 200
        metrics = await client.get(api.metrics_url)
        assert metrics.status_code == 200
        assert "easyclaw_api_database_up 0.0" in metrics.text

        await asyncio.to_thread(own_postgres.start)

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_for(ready, timeout=20, interval=0.2)
        after = await submit(client)
        listed = (await client.get("/jobs")).json()
        assert [job["id"] for job in listed["jobs"]] == [after, before]  # nothing lost
        assert (await read(client, before))["status"] == "PENDING"
