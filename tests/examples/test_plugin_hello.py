"""The plug-in path: examples/plugin-hello, pip-installed, runs in a real worker.

The package is built and installed with pip into a directory of its own (not
into the shared virtual environment), which the worker process gets on its
PYTHONPATH; the worker finds HELLO through the ``easyclaw.job_types`` entry
point, as it would in a deployment that installed the plug-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from easyclaw.core.models import JobStatus
from tests.support.paths import REPO_ROOT
from tests.support.processes import WorkerProcesses
from tests.worker.helpers import Conn, enqueue, wait_status

pytestmark = pytest.mark.slow

PLUGIN = REPO_ROOT / "examples" / "plugin-hello"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-hello")
    # --no-build-isolation: build with the hatchling of this environment, offline.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def python_path(plugin_dir: Path) -> str:
    return os.pathsep.join([str(plugin_dir), str(REPO_ROOT)])


def test_the_installed_plugin_registers_hello_through_its_entry_point(plugin_dir: Path) -> None:
    script = (
        "import json; from easyclaw.core.jobtypes import JobTypeRegistry; "
        "print(json.dumps(JobTypeRegistry.from_entry_points().names))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": python_path(plugin_dir)},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {"HELLO", "ECHO", "CHAT"} <= set(json.loads(result.stdout))


async def test_a_worker_runs_the_plugins_job_type(
    plugin_dir: Path, worker_processes: WorkerProcesses, conn: Conn
) -> None:
    worker_processes.start(1, PYTHONPATH=python_path(plugin_dir), EASYCLAW_WORKER_JOB_TYPES="HELLO")
    greeted = await enqueue(conn, "HELLO", {"name": "Ada", "times": 2})
    refused = await enqueue(conn, "HELLO", {"name": "nobody"})
    done = await wait_status(conn, greeted.id, JobStatus.COMPLETED, timeout=30)
    failed = await wait_status(conn, refused.id, JobStatus.FAILED, timeout=30)
    assert done.result == {"greeting": "Hello, Ada! Hello, Ada!", "attempt": 1}
    assert failed.error == "cannot greet nobody"
    assert failed.attempts == 1
