"""Real `easyclaw` child processes configured from a Settings object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from easyclaw.cli.settings import Settings
from tests.support.paths import REPO_ROOT


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for an `easyclaw` child process with these settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EASYCLAW_")}
    # The repository root makes `tests.support.jobtypes` importable in the child.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "database_url":
            env["DATABASE_URL"] = settings.require_database_url()
        elif isinstance(value, list):
            env[f"EASYCLAW_{name.upper()}"] = ",".join(map(str, value))
        elif isinstance(value, dict):
            env[f"EASYCLAW_{name.upper()}"] = json.dumps(value)
        else:
            env[f"EASYCLAW_{name.upper()}"] = str(value)
    env.update(extra)
    return env


@dataclass
class WorkerProcesses:
    """Real `easyclaw worker` processes; logs go to files under ``log_dir``."""

    settings: Settings
    log_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, count: int = 1, **env: str) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            index = len(self.processes)
            log = (self.log_dir / f"worker-{index}.log").open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "easyclaw.cli.main", "worker"],
                env=process_env(self.settings, EASYCLAW_WORKER_NAME=f"test-worker-{index}", **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.processes.append(process)
            started.append(process)
        return started

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.log_dir.glob("worker-*.log")))

    def stop_all(self, timeout: float = 20.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
