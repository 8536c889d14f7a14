"""The chart's `helm test` pod, run as rendered, with the image's commands.

Its script is taken from ``helm template`` and run in the image's clean
virtual environment against a real API and a real worker: a broken CLI
flag, a changed response shape or a wrong URL fails here, not in a cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.charts.rendering import render
from tests.images.conftest import Image
from tests.support.api_server import ApiServer
from tests.support.processes import WorkerProcesses

pytestmark = pytest.mark.slow


def helm_test_pod(*sets: str) -> dict[str, Any]:
    (pod,) = render("kind", *sets).of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


async def run_pod(image: Image, container: dict[str, Any], api_url: str) -> tuple[int, str]:
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    assert env["EASYCLAW_API_URL"].startswith("http://ec-easyclaw-api:")
    env["EASYCLAW_API_URL"] = api_url  # the Service, here a local server
    process = await asyncio.create_subprocess_exec(
        *container["command"],
        *container["args"],
        env=image.env(**env),
        cwd=image.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_helm_test_pod_passes_when_a_worker_completes_the_job(
    image: Image, api: ApiServer, worker_processes: WorkerProcesses
) -> None:
    worker_processes.start(1)
    code, output = await run_pod(image, helm_test_pod(), api.url)
    assert code == 0, output
    assert '"status": "COMPLETED"' in output
    assert "hello from helm test" in output


async def test_helm_test_pod_fails_when_no_worker_runs(image: Image, api: ApiServer) -> None:
    code, output = await run_pod(image, helm_test_pod("helmTest.timeoutSeconds=1"), api.url)
    assert code != 0
    assert "job did not complete" in output
    assert '"status": "PENDING"' in output
