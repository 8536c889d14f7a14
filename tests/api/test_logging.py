"""An outage that fails every request costs a few log lines, not one per request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from easyclaw.cli.settings import Settings
from tests.support.api_server import api_process
from tests.support.ports import free_port
from tests.support.settings import make_settings


@pytest.mark.slow
async def test_repeated_identical_errors_are_logged_once_then_counted(tmp_path: Path) -> None:
    # Nothing listens on this port: every request that needs the database is a 503.
    unreachable = f"postgresql://easyclaw@127.0.0.1:{free_port()}/easyclaw"
    settings: Settings = make_settings(unreachable, db_pool_timeout_seconds=0.5)
    log_path = tmp_path / "api.log"
    with api_process(settings, log_path) as (url, _pid):
        async with httpx.AsyncClient(base_url=url, headers={"x-user-id": "u"}) as client:
            responses = await asyncio.gather(*(client.get("/jobs") for _ in range(100)))
    assert [response.status_code for response in responses] == [503] * 100
    lines = [orjson.loads(line) for line in log_path.read_text().splitlines() if line]
    unavailable = [line for line in lines if line["event"] == "api.db_unavailable"]
    summaries = [
        line
        for line in lines
        if line["event"] == "log.suppressed" and line["suppressed_event"] == "api.db_unavailable"
    ]
    # One line, and the count of the other 99 (written when the process stopped).
    assert len(unavailable) == 1, unavailable
    assert sum(line["suppressed"] for line in summaries) == 99, summaries
