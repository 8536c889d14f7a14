"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test,
settings pointing at it, pools, a real HTTP server for the API, and worker
processes.

The server is the embedded PostgreSQL from PyPI (the same one `easyclaw up`
uses), so a fresh clone needs no installed database. Each test gets its own
database cloned from a migrated template, which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from easyclaw.api.app import create_app
from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.migrations import migrate
from easyclaw.core.settings import Settings
from tests.support.web_pages import WebServer, web_server

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_JOB_TYPES = "tests.support.jobtypes"
TEMPLATE_DB = "easyclaw_template"

# Throwaway clusters need no crash safety; this makes them several times faster.
FAST_UNSAFE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"), settings=FAST_UNSAFE_SETTINGS)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")


def _admin_execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@pytest.fixture(scope="session")
def template_database(postgres: LocalPostgres) -> str:
    _admin_execute(postgres.url(), f"CREATE DATABASE {TEMPLATE_DB}")
    asyncio.run(migrate(postgres.url(TEMPLATE_DB)))
    return TEMPLATE_DB


def create_database(postgres: LocalPostgres, template: str) -> str:
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    _admin_execute(postgres.url(), f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def drop_database(postgres: LocalPostgres, name: str) -> None:
    _admin_execute(postgres.url(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(postgres: LocalPostgres, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = create_database(postgres, template_database)
    try:
        yield postgres.url(name)
    finally:
        drop_database(postgres, name)


@pytest.fixture
def empty_database_url(postgres: LocalPostgres) -> Iterator[str]:
    """A database without the schema (for migration tests)."""
    name = create_database(postgres, "template1")
    try:
        yield postgres.url(name)
    finally:
        drop_database(postgres, name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "auth_mode": "header",
        "job_type_modules": [TEST_JOB_TYPES],
        "worker_lease_seconds": 5.0,
        "worker_heartbeat_interval_seconds": 1.0,
        "worker_maintenance_interval_seconds": 1.0,
        "worker_poll_interval_seconds": 5.0,
        "worker_shutdown_grace_seconds": 5.0,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "db_pool_max_size": 10,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def registry(settings: Settings) -> JobTypeRegistry:
    return load_registry(settings)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[AsyncPool]:
    db_pool = create_pool(settings, application_name="easyclaw-tests")
    await db_pool.open(wait=True)
    try:
        yield db_pool
    finally:
        await db_pool.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection


# ---------------------------------------------------------------- S3 and the web


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real moto S3 server on a free localhost port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty bucket of this test's own; dummy credentials in the environment."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"easyclaw-test-{os.getpid()}-{next(_database_numbers)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def web() -> Iterator[WebServer]:
    """A local web server with real pages (RESEARCH tests)."""
    with web_server() as server:
        yield server


# ---------------------------------------------------------------- API server


@dataclass
class ApiServer:
    url: str
    settings: Settings
    server: uvicorn.Server

    def client(self, user_id: str | None = "test-user-id", **kwargs: Any) -> httpx.AsyncClient:
        headers = {"x-user-id": user_id} if user_id else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve_api(
    settings: Settings, registry: JobTypeRegistry | None = None
) -> AsyncIterator[ApiServer]:
    """The real app behind a real uvicorn server on a free localhost port."""
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections
    # (otherwise each response waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, registry),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield ApiServer(url=f"http://127.0.0.1:{port}", settings=settings, server=server)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def api(settings: Settings, registry: JobTypeRegistry) -> AsyncIterator[ApiServer]:
    async with serve_api(settings, registry) as server:
        yield server


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as http:
        yield http


# ---------------------------------------------------------------- worker processes


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for an `easyclaw` child process with these settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EASYCLAW_")}
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


@pytest.fixture
def worker_processes(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(settings=settings, log_dir=tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


async def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll an (async or sync) condition until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
