"""The chart's `helm test` pod, run as rendered, with the image's commands.

Its script is taken from ``helm template`` and run in the image's clean
virtual environment against a real API and a real worker: a broken CLI
flag, a changed response shape or a wrong URL fails here, not in a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from tests.charts.rendering import render
from tests.images.conftest import Image
from tests.support.api_server import ApiServer, serve_api
from tests.support.jwks import KID, Jwks, serve_jwks
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.worker.helpers import Conn

ISSUER = "https://auth.example.com/"
AUDIENCE = "easyclaw"

pytestmark = pytest.mark.slow


def helm_test_pod(*sets: str, value_set: str = "kind") -> dict[str, Any]:
    (pod,) = render(value_set, *sets).of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


async def run_pod(
    image: Image, container: dict[str, Any], api_url: str, **secrets: str
) -> tuple[int, str]:
    """Run the container's command; ``secrets`` fill its secretKeyRef variables."""
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    from_secrets = {item["name"] for item in container["env"] if "valueFrom" in item}
    assert from_secrets == set(secrets), f"the pod reads {from_secrets} from Secrets"
    env.update(secrets)
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


@pytest.fixture
async def jwt_api(database_url: str) -> AsyncIterator[tuple[ApiServer, Jwks]]:
    """The API in jwt mode (the chart's default) with a real JWKS endpoint."""
    with serve_jwks() as jwks:
        settings = make_settings(
            database_url,
            env="production",
            auth_mode="jwt",
            jwt_jwks_url=jwks.url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
        )
        async with serve_api(settings) as server:
            yield server, jwks


def token(jwks: Jwks, subject: str = "helm-test") -> str:
    now = int(time.time())
    claims = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    return jwt.encode(claims, jwks.key, algorithm="RS256", headers={"kid": KID})


async def test_jwt_mode_without_a_token_checks_what_needs_no_user(
    image: Image, jwt_api: tuple[ApiServer, Jwks], conn: Conn
) -> None:
    """The default values (jwt, no helmTest.tokenSecret): `helm test` passes, submits nothing."""
    api, _ = jwt_api
    container = helm_test_pod("helmTest.tokenSecret=", value_set="eks-fargate")
    code, output = await run_pod(image, container, api.url)
    assert code == 0, output
    assert "GET /readyz: 200" in output
    assert "POST /jobs without a token: 401" in output
    assert await (await conn.execute(b"SELECT count(*) FROM jobs")).fetchone() == (0,)


async def test_jwt_mode_without_a_token_fails_if_the_api_lets_anyone_in(
    image: Image, api: ApiServer
) -> None:
    container = helm_test_pod("helmTest.tokenSecret=", value_set="eks-fargate")
    code, output = await run_pod(image, container, api.url)  # a header-mode API
    assert code != 0
    assert "POST /jobs without a token was accepted" in output


async def test_jwt_mode_with_a_token_secret_runs_a_job_as_that_user(
    image: Image, jwt_api: tuple[ApiServer, Jwks], worker_processes: WorkerProcesses, conn: Conn
) -> None:
    api, jwks = jwt_api
    container = helm_test_pod(value_set="eks-fargate")  # tokenSecret: easyclaw-helm-test-token
    worker_processes.start(1)
    code, output = await run_pod(image, container, api.url, EASYCLAW_TOKEN=token(jwks))
    assert code == 0, output
    assert '"status": "COMPLETED"' in output
    row = await (await conn.execute(b"SELECT user_id FROM jobs")).fetchone()
    assert row == ("helm-test",)
