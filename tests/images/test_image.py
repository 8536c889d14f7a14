"""The image, replayed: its install step and every container command, in a clean venv.

No Docker engine runs here, so ``image`` (tests/images/conftest.py) runs the
Dockerfile's own ``RUN`` lines with the build context ``.dockerignore``
allows. A broken entrypoint, a missing runtime dependency or a file the
allow-list forgets fails these tests.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.images.conftest import Image
from tests.support import dockerfile
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

STAGES = dockerfile.parse(REPO_ROOT / "Dockerfile")
RUNTIME = STAGES[-1]
COMMANDS = ["api", "worker", "migrate", "operator", "metrics-mirror"]


def run(image: Image, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        image.command(list(argv)),
        env=image.env(**env),
        cwd=image.workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?", stage.base), stage.base
    copies = [rest for keyword, rest in RUNTIME.instructions if keyword == "COPY"]
    assert copies == [f"--from={STAGES[0].name} {dockerfile.IMAGE_VENV} {dockerfile.IMAGE_VENV}"]


def test_runtime_stage_runs_unprivileged_without_compilers() -> None:
    users = [rest for keyword, rest in RUNTIME.instructions if keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric uid, so runAsNonRoot can check it"
    assert int(uid) >= 10000
    runs = " ".join(RUNTIME.runs)
    assert not re.search(r"apt-get install|gcc|build-essential|pip install", runs)
    assert RUNTIME.env["PYTHONUNBUFFERED"] == "1"
    assert dockerfile.exec_form(RUNTIME, "ENTRYPOINT") == ["easyclaw"]


def test_runtime_stage_has_oci_labels_and_a_healthcheck() -> None:
    labels = " ".join(rest for keyword, rest in RUNTIME.instructions if keyword == "LABEL")
    for key in ("title", "description", "licenses", "source", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert dockerfile.exec_form(RUNTIME, "HEALTHCHECK")[0] == "python"


def test_build_context_is_an_allow_list(tmp_path: Path) -> None:
    dockerfile.copy_build_context(REPO_ROOT, tmp_path)
    sent = {path.relative_to(tmp_path).parts[0] for path in tmp_path.iterdir()}
    assert {"pyproject.toml", "constraints.txt", "src", "api", "worker"} <= sent
    assert not sent & {".venv", ".git", "tests", ".easyclaw", "charts", "bench"}
    assert not list(tmp_path.rglob("__pycache__"))


def test_top_level_help_lists_the_server_commands(image: Image) -> None:
    result = run(image, *dockerfile.exec_form(RUNTIME, "ENTRYPOINT"), "--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_container_command_starts(image: Image, command: str) -> None:
    result = run(image, "easyclaw", command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: easyclaw" in result.stdout


def test_image_migrates_serves_and_passes_its_healthcheck(image: Image, database_url: str) -> None:
    """`migrate`, then the default command (`api`), then the HEALTHCHECK, as the image runs them."""
    migrated = run(image, "easyclaw", "migrate", DATABASE_URL=database_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout or "up to date" in migrated.stdout

    port = str(free_port())
    env = {
        "DATABASE_URL": database_url,
        "EASYCLAW_API_PORT": port,
        "EASYCLAW_JWT_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    }
    default_command = dockerfile.exec_form(RUNTIME, "ENTRYPOINT") + dockerfile.exec_form(
        RUNTIME, "CMD"
    )
    server = subprocess.Popen(
        image.command(default_command),
        env=image.env(**env),
        cwd=image.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        healthcheck = dockerfile.exec_form(RUNTIME, "HEALTHCHECK")
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"the api exited: {server.stdout.read()}"  # type: ignore[union-attr]
            if run(image, *healthcheck, EASYCLAW_API_PORT=port).returncode == 0:
                break
            assert time.monotonic() < deadline, "HEALTHCHECK never passed"
            time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200
        # Production image defaults: jwt auth, so anonymous calls are refused.
        assert httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5).status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.returncode in (0, -signal.SIGTERM)


def test_image_worker_reports_healthy_and_stops_on_sigterm(image: Image, database_url: str) -> None:
    port = free_port()
    worker = subprocess.Popen(
        image.command(["easyclaw", "worker"]),
        env=image.env(DATABASE_URL=database_url, EASYCLAW_WORKER_HEALTH_PORT=str(port)),
        cwd=image.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert worker.poll() is None, f"the worker exited: {worker.stdout.read()}"  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert '"worker.stopped"' in output
