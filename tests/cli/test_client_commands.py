"""``easyclaw submit/get/list/cancel/stats`` as subprocesses against a real API server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from easyclaw.cli.settings import Settings
from easyclaw.worker.runner import Worker
from tests.cli.conftest import USER_ID
from tests.cli.helpers import run_cli, run_cli_sync
from tests.support.api_server import ApiServer
from tests.support.ports import free_port
from tests.support.processes import process_env

pytestmark = pytest.mark.slow


async def api_jobs(api: ApiServer) -> list[dict[str, Any]]:
    """The test user's jobs, read over HTTP (not through the CLI under test)."""
    async with api.client(USER_ID) as http:
        response = await http.get("/jobs", params={"limit": 100})
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs


async def test_submit_prints_the_created_job(api: ApiServer, cli_env: dict[str, str]) -> None:
    created = (await run_cli("submit", "ECHO", "--message", "hi", env=cli_env)).json()
    assert created["status"] == "PENDING"
    assert created["message"] == "Job created successfully"
    [job] = await api_jobs(api)
    assert job["id"] == created["jobId"]
    assert job["type"] == "ECHO"
    assert job["payload"] == {"message": "hi"}


async def test_submit_wait_prints_the_completed_job(
    api: ApiServer, cli_env: dict[str, str], worker: Worker
) -> None:
    result = await run_cli(
        "submit", "echo", "--payload", '{"n": 1}', "--message", "hi", "--wait", "10", env=cli_env
    )
    job = result.json()
    assert job["type"] == "ECHO"
    assert job["status"] == "COMPLETED", job
    assert job["payload"] == {"n": 1, "message": "hi"}
    assert job["result"] == job["payload"]
    assert job["attempts"] == 1


async def test_get_list_cancel_and_stats_print_json(
    api: ApiServer, cli_env: dict[str, str]
) -> None:
    first = (await run_cli("submit", "ECHO", "--message", "one", env=cli_env)).json()["jobId"]
    second = (await run_cli("submit", "ECHO", "--message", "two", env=cli_env)).json()["jobId"]

    got, listed, cancelled = await asyncio.gather(
        run_cli("get", first, env=cli_env),
        run_cli("list", "--limit", "5", env=cli_env),
        run_cli("cancel", second, env=cli_env),
    )
    job = got.json()
    assert (job["id"], job["status"], job["payload"]) == (first, "PENDING", {"message": "one"})
    page = listed.json()
    assert page["count"] == 2
    assert {job["id"] for job in page["jobs"]} == {first, second}
    assert page["nextCursor"] is None
    assert cancelled.json()["id"] == second
    assert cancelled.json()["status"] == "CANCELLED"

    stats = (await run_cli("stats", env=cli_env)).json()
    assert stats["pending"] == 1
    assert stats["cancelled"] == 1
    assert stats["running"] == stats["completed"] == stats["failed"] == 0

    only_cancelled = (await run_cli("list", "--status", "CANCELLED", env=cli_env)).json()
    assert [job["id"] for job in only_cancelled["jobs"]] == [second]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json", "easyclaw submit: --payload is not valid JSON"),
        ("[1, 2]", "easyclaw submit: --payload must be a JSON object"),
    ],
    ids=["not-json", "not-an-object"],
)
async def test_invalid_payload_is_refused_before_calling_the_api(
    api: ApiServer, cli_env: dict[str, str], payload: str, expected: str
) -> None:
    result = await run_cli("submit", "ECHO", "--payload", payload, "--message", "hi", env=cli_env)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert await api_jobs(api) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("submit", "NO_SUCH_TYPE"), "easyclaw submit: 422 UNKNOWN_JOB_TYPE"),
        (("get", str(uuid.UUID(int=1))), "easyclaw get: 404 JOB_NOT_FOUND"),
    ],
    ids=["unknown-type", "unknown-job"],
)
async def test_api_error_exits_1_with_the_error_code(
    api: ApiServer, cli_env: dict[str, str], args: tuple[str, ...], expected: str
) -> None:
    result = await run_cli(*args, env=cli_env)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unreachable_api_exits_1(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = process_env(settings, EASYCLAW_API_URL=url, EASYCLAW_USER_ID=USER_ID)
    result = run_cli_sync("stats", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("easyclaw stats: ")
    assert f"cannot reach {url}" in result.stderr
    assert "Traceback" not in result.stderr
