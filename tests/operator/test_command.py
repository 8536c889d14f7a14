"""``easyclaw operator``: refuses to start without its namespaces; serves /healthz."""

from __future__ import annotations

import aiohttp
import pytest

from easyclaw.cli.main import main
from tests.conftest import free_port, wait_for
from tests.operator.conftest import OperatorUnderTest


def test_operator_without_namespaces_exits_2_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://easyclaw@127.0.0.1:1/easyclaw")
    monkeypatch.delenv("EASYCLAW_OPERATOR_NAMESPACES", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["operator"])
    assert exited.value.code == 2
    assert "EASYCLAW_OPERATOR_NAMESPACES is not set" in capsys.readouterr().err


def test_operator_without_database_url_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("EASYCLAW_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["operator", "--namespaces", "jobs"])
    assert exited.value.code == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err


async def test_healthz_reports_the_operator_alive(operator: OperatorUnderTest) -> None:
    port = free_port()
    await operator.stop()
    await operator.start(operator.settings.model_copy(update={"operator_health_port": port}))
    async with aiohttp.ClientSession() as http:

        async def healthy() -> dict[str, object] | None:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    body: dict[str, object] = await response.json()
                    return body if response.status == 200 and body else None
            except aiohttp.ClientConnectionError:
                return None

        report = await wait_for(healthy, timeout=10)
    assert set(report) == {"jobEventsListener"}  # our probe, run by kopf's liveness endpoint
