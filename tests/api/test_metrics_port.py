"""`easyclaw api` as a process: /metrics on its own port, never on the API port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from easyclaw.cli.settings import Settings
from tests.support.ports import free_port
from tests.support.processes import process_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # starts an `easyclaw api` process


@pytest.fixture
def api_process(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(API URL, metrics URL) of a running `easyclaw api` process."""
    port, metrics_port = free_port(), free_port()
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "easyclaw.cli.main", "api"],
        env=process_env(
            settings, EASYCLAW_API_PORT=str(port), EASYCLAW_API_METRICS_PORT=str(metrics_port)
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


async def test_metrics_answer_on_the_metrics_port_only(api_process: tuple[str, str]) -> None:
    api_url, metrics_url = api_process
    async with httpx.AsyncClient(timeout=5) as http:

        async def up() -> bool:
            try:
                return (await http.get(f"{api_url}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(up, timeout=30, interval=0.1)
        await wait_for(lambda: _answers(metrics_url), timeout=10, interval=0.1)

        metrics = await http.get(f"{metrics_url}/metrics")
        assert metrics.status_code == 200
        assert "easyclaw_queue_jobs" in metrics.text
        assert "easyclaw_api_database_up 1.0" in metrics.text

        on_api_port = await http.get(f"{api_url}/metrics")
        assert on_api_port.status_code == 404
        assert "easyclaw_" not in on_api_port.text
        # The metrics port serves nothing of the API.
        assert (await http.get(f"{metrics_url}/jobs")).status_code == 404
        assert (await http.get(f"{metrics_url}/healthz")).status_code == 404


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/metrics", timeout=2)
    except httpx.TransportError:
        return False
    return True
