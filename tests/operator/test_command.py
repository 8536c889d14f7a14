"""``easyclaw operator``: refuses to start without its namespaces; serves /healthz."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml
from kmock import KubernetesEmulator

from easyclaw.cli.main import main
from easyclaw.cli.settings import Settings
from easyclaw.operator.resource import GROUP, KIND, VERSION
from tests.operator.conftest import COLLECTION, NAMESPACE, OperatorUnderTest
from tests.support.ports import free_port
from tests.support.processes import process_env
from tests.support.waiting import wait_for


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


@pytest.mark.slow
async def test_easyclaw_operator_process_signs_in_with_a_kubeconfig_and_stops_on_sigterm(
    kube: KubernetesEmulator, operator_settings: Settings, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kube.url).rstrip("/")}}],
                "users": [{"name": "tester", "user": {"token": "not-checked"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
                "current-context": "kmock",
            }
        )
    )
    port = free_port()
    env = process_env(
        operator_settings,
        KUBECONFIG=str(kubeconfig),
        EASYCLAW_OPERATOR_HEALTH_PORT=str(port),
    )
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "easyclaw.cli.main", "operator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with aiohttp.ClientSession(
            base_url=str(kube.url), connector=aiohttp.TCPConnector(force_close=True)
        ) as http:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "metadata": {
                    "name": "from-process",
                    "namespace": NAMESPACE,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": "1",
                },
                "spec": {"type": "ECHO", "payload": {"message": "hi"}, "userId": "u"},
            }
            async with http.post(COLLECTION, json=body) as response:
                assert response.status < 300, await response.text()

            async def enqueued() -> bool:
                async with http.get(f"{COLLECTION}/from-process") as response:
                    found = await response.json()
                    return bool((found.get("status") or {}).get("jobId"))

            await wait_for(enqueued, timeout=30)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    output = log_path.read_text()
    assert code == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert "operator.started" in events
    assert "operator.job_enqueued" in events
    assert "operator.stopped" in events
    # The job's follower returned when kopf asked it to stop, so kopf had no
    # daemon to cancel and no "Daemon 'follow' is cancelled" warning to post.
    assert "is cancelled" not in output
