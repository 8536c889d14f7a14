"""skaffold dev's file sync, as the pods run it: a synced edit restarts the process.

The chart's development.sourceSync gives each pod a writable copy of the
installed package (an init container copies it into an emptyDir mounted over
the package directory), where skaffold syncs edited files, and runs the
process under ``watchfiles``. Here the init container's and the worker
container's commands, as rendered, run in the image's virtual environment,
with the package directory mapped to a temporary one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.charts.rendering import CHART, render
from tests.images.conftest import Image

pytestmark = pytest.mark.slow


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_synced_source_change_restarts_the_worker(
    image: Image, database_url: str, tmp_path: Path
) -> None:
    package_dir = yaml.safe_load((CHART / "values.yaml").read_text())["development"]["packageDir"]
    spec = render("kind", "development.sourceSync=true").get("Deployment", "worker")
    pod = spec["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (container,) = pod["containers"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    installed = image.venv / "lib" / version / "site-packages" / "easyclaw"
    assert package_dir.endswith(f"/{version}/site-packages/easyclaw")

    source = tmp_path / "source"
    source.mkdir()
    copy = [arg.replace(package_dir, str(installed)) for arg in init["command"]]
    copy = [arg.replace("/source/", f"{source}/") for arg in copy]
    subprocess.run(copy, check=True, timeout=30)
    edited = source / "core" / "queue.py"
    assert edited.read_text() == (installed / "core" / "queue.py").read_text()

    command = [arg.replace(package_dir, str(source)) for arg in container["command"]]
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            image.command(command),
            env=image.env(DATABASE_URL=database_url),
            cwd=image.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def started(times: int) -> bool:
            assert process.poll() is None, log_path.read_text()
            return log_path.read_text().count('"worker.started"') >= times

        wait_until(lambda: started(1), "the worker to start")
        edited.write_text(edited.read_text() + "\n# edited in the checkout, synced by skaffold\n")
        wait_until(lambda: started(2), "the worker to restart after the edit")
        assert log_path.read_text().count('"worker.stopped"') >= 1, "the old process stopped first"
    finally:
        process.send_signal(signal.SIGTERM)  # what the kubelet sends
        process.wait(timeout=30)
    assert process.returncode == 0, log_path.read_text()
