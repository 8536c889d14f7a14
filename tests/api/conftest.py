"""Helpers for the REST API tests: an in-process worker and error-body checks.

The API runs behind a real uvicorn server (``api`` / ``client`` / ``serve_api``
in tests/conftest.py) against a real PostgreSQL; nothing here mocks either.
These tests run on uvloop, the event loop `easyclaw api` serves with.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvloop

from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.worker.runner import Worker


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run on uvloop, as production does (api/easyclaw/api/server.py). The stdlib
    loop only sets TCP_NODELAY on sockets created with proto=IPPROTO_TCP, which
    serve_api's listening socket is not, so each response there waits ~40 ms for a
    delayed ACK; uvloop sets it on every TCP connection."""
    return {"uvloop": uvloop.new_event_loop}


GUIDE_JOB: dict[str, Any] = {"type": "ECHO", "payload": {"message": "Hello from EasyClaw!"}}
"""The request the getting-started guide sends."""


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the API's JSON error with this status and code."""
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{request}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), request
    body: dict[str, Any] = response.json()
    assert body["error"] == code, f"{request}: {body}"
    assert isinstance(body["message"], str), f"{request}: {body}"
    assert body["message"], f"{request}: {body}"
    return body


async def submit(
    client: httpx.AsyncClient, body: dict[str, Any] | None = None, **kwargs: Any
) -> str:
    """POST /jobs and return the new job's id (the request must create a job)."""
    response = await client.post("/jobs", json=GUIDE_JOB if body is None else body, **kwargs)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["jobId"]
    return job_id


async def read(client: httpx.AsyncClient, job_id: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}", params=params)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


@asynccontextmanager
async def running_worker(
    settings: Settings, registry: JobTypeRegistry, pool: AsyncPool
) -> AsyncIterator[Worker]:
    """A worker running in this event loop until the block ends (then stopped and drained)."""
    running = Worker(settings, registry, pool)
    task = asyncio.create_task(running.run(), name="test-worker")
    try:
        yield running
    finally:
        running.stop()
        await task


@pytest.fixture
async def worker(
    settings: Settings, registry: JobTypeRegistry, pool: AsyncPool
) -> AsyncIterator[Worker]:
    """A worker running for the whole test."""
    async with running_worker(settings, registry, pool) as running:
        yield running
