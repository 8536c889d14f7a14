"""``easyclaw up`` end to end: its own embedded PostgreSQL, the API and workers as
children, the getting-started guide's calls, restarts, and a clean stop on
SIGTERM and on SIGINT (Ctrl-C)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from easyclaw.cli.local_postgres import LocalPostgres, LocalPostgresError
from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

GUIDE_JOB: dict[str, Any] = {"type": "ECHO", "payload": {"message": "Hello from EasyClaw!"}}
GUIDE_CHAT_JOB: dict[str, Any] = {"type": "CHAT", "payload": {"message": "Hello from EasyClaw!"}}
GUIDE_HEADERS = {"x-user-id": "test-user-id"}
WORKERS = 2
STOP_WITHIN_SECONDS = 15.0

T = TypeVar("T")


def poll(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@dataclass
class Up:
    """One ``easyclaw up`` process; its output (and its children's) goes to ``log``."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.data_dir / "up.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.data_dir / "postgres")

    @property
    def postmaster_pid_file(self) -> Path:
        return self.postgres.pgdata / "postmaster.pid"

    def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("EASYCLAW_") and key != "DATABASE_URL"
        }
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
            EASYCLAW_LOCAL_DATA_DIR=str(self.data_dir),
            EASYCLAW_API_PORT=str(self.port),
            EASYCLAW_LOCAL_WORKERS=str(WORKERS),
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "easyclaw.cli.main", "up"],
                env=env,
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def events(self, name: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log lines so far (of ``up`` and its children), optionally filtered."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if name is not None and event.get("event") != name:
                continue
            if all(event.get(key) == value for key, value in fields.items()):
                found.append(event)
        return found

    def children(self) -> dict[str, int]:
        """The latest pid of each child process, by name (api, worker-0, ...)."""
        return {event["process"]: event["pid"] for event in self.events("up.process_started")}

    def healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"easyclaw up exited early:\n{self.log.read_text()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        poll(self.healthy, timeout=60, what="GET /healthz of `easyclaw up`")
        poll(
            lambda: len(self.events("worker.started")) >= WORKERS,
            timeout=30,
            what="the workers to start",
        )

    def stop(self, signum: signal.Signals) -> tuple[int, float]:
        """Send ``signum``; return the exit code and how long the process took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_WITHIN_SECONDS + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"easyclaw up ignored {signum.name}:\n{self.log.read_text()}")
        return code, time.monotonic() - started

    def cleanup(self) -> None:
        """After a failed test: leave no process or server behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.log.exists():
            for pid in self.children().values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.postmaster_pid_file.exists():
            with contextlib.suppress(LocalPostgresError):
                self.postgres.stop("immediate")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(data_dir=tmp_path)
    try:
        yield running
    finally:
        running.cleanup()


def postmaster_pid(up: Up) -> int:
    return int(up.postmaster_pid_file.read_text().splitlines()[0])


def assert_stopped_cleanly(
    up: Up, code: int, elapsed: float, children: dict[str, int], postmaster: int
) -> None:
    assert code == 0, up.log.read_text()
    assert elapsed < STOP_WITHIN_SECONDS, f"stopping took {elapsed:.1f} s"
    assert set(children) == {"api", *(f"worker-{n}" for n in range(WORKERS))}
    still_running = {name: pid for name, pid in children.items() if alive(pid)}
    assert not still_running, f"children outlived `easyclaw up`: {still_running}"
    assert len(up.events("worker.stopped")) >= WORKERS, "the workers were not stopped gracefully"
    # pg_ctl stop -w returned once postmaster.pid was gone; the process exits right after.
    poll(lambda: not alive(postmaster), timeout=5, what="the embedded PostgreSQL to exit")
    assert not up.postmaster_pid_file.exists()
    assert not up.postgres.is_running()  # pg_ctl status
    assert up.events("up.postgres_stopped")


def test_up_runs_the_guide_and_stops_on_sigterm(up: Up) -> None:
    up.start()
    up.wait_ready()
    postmaster = postmaster_pid(up)
    assert alive(postmaster)

    with httpx.Client(base_url=up.url, headers=GUIDE_HEADERS, timeout=30) as http:
        created = http.post("/jobs", json=GUIDE_JOB)
        assert created.status_code == 201, created.text
        job_id = created.json()["jobId"]

        finished = http.get(f"/jobs/{job_id}", params={"wait": 10})
        assert finished.status_code == 200, finished.text
        job = finished.json()
        assert job["status"] == "COMPLETED", job
        assert job["result"] == GUIDE_JOB["payload"]

        listed = http.get("/jobs", params={"limit": 10})
        assert listed.status_code == 200, listed.text
        assert job_id in [job["id"] for job in listed.json()["jobs"]]

        # The guide's CHAT call runs offline on the echo provider, `make up`'s default.
        chat = http.post("/jobs", json=GUIDE_CHAT_JOB)
        assert chat.status_code == 201, chat.text
        chat_job = http.get(f"/jobs/{chat.json()['jobId']}", params={"wait": 10}).json()
        assert chat_job["status"] == "COMPLETED", chat_job
        reply = chat_job["result"]
        assert reply["message"].endswith("You said: Hello from EasyClaw!")
        assert "not a language model" in reply["message"]
        assert reply["model"] == "echo"
        assert reply["conversationId"] == chat_job["conversationId"] == chat_job["id"]

    children = up.children()
    assert all(alive(pid) for pid in children.values()), children
    code, elapsed = up.stop(signal.SIGTERM)
    assert_stopped_cleanly(up, code, elapsed, children, postmaster)


def test_up_stops_on_sigint(up: Up) -> None:
    up.start()
    up.wait_ready()
    postmaster = postmaster_pid(up)
    children = up.children()
    code, elapsed = up.stop(signal.SIGINT)
    assert_stopped_cleanly(up, code, elapsed, children, postmaster)


def test_up_restarts_a_killed_worker(up: Up) -> None:
    up.start()
    up.wait_ready()
    postmaster = postmaster_pid(up)
    killed = up.children()["worker-0"]
    os.kill(killed, signal.SIGKILL)

    [exited] = poll(
        lambda: up.events("up.process_exited", process="worker-0"),
        timeout=10,
        what="up.process_exited for worker-0",
    )
    assert exited["exit_code"] == -signal.SIGKILL
    replacement = poll(
        lambda: up.children()["worker-0"] != killed and up.children()["worker-0"],
        timeout=10,
        what="a new worker-0 process",
    )
    assert alive(replacement)
    poll(
        lambda: len(up.events("worker.started")) == WORKERS + 1,
        timeout=30,
        what="the restarted worker's worker.started",
    )
    assert [e["process"] for e in up.events("up.process_exited")] == ["worker-0"]

    code, elapsed = up.stop(signal.SIGTERM)
    assert_stopped_cleanly(up, code, elapsed, up.children(), postmaster)


def server_pid(up: Up) -> int | None:
    """The postmaster's pid once the real server is starting: initdb's bootstrap
    (single-user) server also writes postmaster.pid, with a negative pid."""
    try:
        pid = int(up.postmaster_pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if pid > 0 else None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_up_stopped_while_the_database_starts_leaves_nothing_running(
    up: Up, signum: signal.Signals
) -> None:
    """A Ctrl-C (or SIGTERM) during startup must not orphan the embedded PostgreSQL."""
    up.start()
    postmaster = poll(
        lambda: server_pid(up), timeout=60, what="the server's postmaster.pid", interval=0.005
    )
    code, elapsed = up.stop(signum)
    poll(lambda: not alive(postmaster), timeout=5, what="the orphaned PostgreSQL to exit")
    assert code == 0, up.log.read_text()
    assert elapsed < STOP_WITHIN_SECONDS, f"stopping took {elapsed:.1f} s"
    assert not up.postmaster_pid_file.exists()
    assert not [pid for pid in up.children().values() if alive(pid)]
    assert up.events("up.postgres_stopped")
