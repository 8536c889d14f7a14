"""``easyclaw up``: the whole system on one machine.

Starts an embedded PostgreSQL (unless DATABASE_URL is set), applies the
migrations, then runs the API and N worker processes as children, restarting
any that crash. Ctrl-C or SIGTERM stops the children gracefully (workers drain
their jobs), then the database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

import httpx

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.cli.settings import Settings
from easyclaw.core.backoff import backoff_delay
from easyclaw.core.jsonlog import EventLogger, redact
from easyclaw.core.migrations import migrate

log = EventLogger("easyclaw.up")

RESTART_BACKOFF_BASE_SECONDS = 0.5
RESTART_BACKOFF_MAX_SECONDS = 10.0


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


def _child_env(settings: Settings, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    # A local run is for trying things out: trust x-user-id unless told otherwise.
    env.setdefault("EASYCLAW_AUTH_MODE", "header")
    env["EASYCLAW_API_HOST"] = settings.api_host
    env["EASYCLAW_API_PORT"] = str(settings.api_port)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_until_serving(
    url: str, processes: list[Child], stopping: threading.Event, timeout: float = 30.0
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping.is_set():
        if any(child.process and child.process.poll() is not None for child in processes):
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def run_up(settings: Settings) -> int:
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    # Handle the signals before starting anything: a Ctrl-C or SIGTERM while the
    # database starts must still stop it (below), not leave it running.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    local: LocalPostgres | None = None
    children: list[Child] = []
    try:
        if settings.database_url is None:
            local = LocalPostgres(settings.local_data_dir / "postgres")
            log.info("up.postgres_starting", data_dir=str(local.data_dir))
            local.start()
            database_url = local.url()
        else:
            database_url = settings.require_database_url()
        applied = asyncio.run(migrate(database_url))
        log.info("up.migrated", applied=[f"{m.version:04d}_{m.name}" for m in applied])
        if stopping.is_set():  # asked to stop while starting: start no children
            return 0
        env = _child_env(settings, database_url)
        base = [sys.executable, "-m", "easyclaw.cli.main"]
        children = [Child("api", [*base, "api"])]
        children += [Child(f"worker-{n}", [*base, "worker"]) for n in range(settings.local_workers)]
        for child in children:
            _start(child, env)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        if _wait_until_serving(api_url, children, stopping):
            _print_banner(api_url, database_url, settings.local_workers)
        while not stopping.is_set():
            for child in children:
                _supervise(child, env)
            time.sleep(0.2)
        return 0
    finally:
        _stop_children(children, grace=settings.worker_shutdown_grace_seconds + 5)
        if local is not None and local.stop():
            log.info("up.postgres_stopped")


def _start(child: Child, env: dict[str, str]) -> None:
    # Children get their own process group so that Ctrl-C reaches them only
    # through us, in order: stop claiming, drain, then the database.
    child.process = subprocess.Popen(child.command, env=env, start_new_session=True)  # noqa: S603
    child.started_at = time.monotonic()
    log.info("up.process_started", process=child.name, pid=child.process.pid)


def _supervise(child: Child, env: dict[str, str]) -> None:
    process = child.process
    if process is None:
        if time.monotonic() >= child.next_start:
            _start(child, env)
        return
    code = process.poll()
    if code is None:
        return
    if time.monotonic() - child.started_at > 60:
        child.restarts = 0  # it ran fine for a while: this is a new problem
    child.restarts += 1
    delay = backoff_delay(
        child.restarts - 1, base=RESTART_BACKOFF_BASE_SECONDS, cap=RESTART_BACKOFF_MAX_SECONDS
    )
    log.warning("up.process_exited", process=child.name, exit_code=code, restart_in_seconds=delay)
    child.process = None
    child.next_start = time.monotonic() + delay


def _stop_children(children: list[Child], *, grace: float) -> None:
    running = [child for child in children if child.process and child.process.poll() is None]
    for child in running:
        assert child.process is not None
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("up.process_killed", process=child.name)
            child.process.kill()
            child.process.wait()


def _print_banner(api_url: str, database_url: str, workers: int) -> None:
    print(
        f"""
EasyClaw is up: API {api_url} (docs at {api_url}/docs), {workers} worker process(es).
Database: {redact(database_url)}

Try it:
  curl -X POST {api_url}/jobs -H 'Content-Type: application/json' -H 'x-user-id: test-user-id' \\
       -d '{{"type":"ECHO","payload":{{"message":"Hello from EasyClaw!"}}}}'
  curl {api_url}/jobs?limit=10 -H 'x-user-id: test-user-id'

Ctrl-C stops everything.
""",
        flush=True,
    )
