"""Fixtures for the CLI tests: the environment of an ``easyclaw`` client process
pointed at the real API server of the ``api`` fixture, and an in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.worker.runner import Worker
from tests.support.api_server import ApiServer
from tests.support.processes import process_env

USER_ID = "test-user-id"


@pytest.fixture
def cli_env(api: ApiServer) -> dict[str, str]:
    """Environment of a client command talking to ``api`` as ``USER_ID``."""
    return process_env(api.settings, EASYCLAW_API_URL=api.url, EASYCLAW_USER_ID=USER_ID)


@pytest.fixture
async def worker(
    settings: Settings, registry: JobTypeRegistry, pool: AsyncPool
) -> AsyncIterator[Worker]:
    """A worker on this event loop, against the API's database; drained after the test."""
    running = Worker(settings, registry, pool)
    task = asyncio.create_task(running.run(), name="cli-test-worker")
    try:
        yield running
    finally:
        running.stop()
        await task
