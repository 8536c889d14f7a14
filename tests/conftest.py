"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test,
settings pointing at it, pools, a real HTTP server for the API, and worker
processes.

The server is the embedded PostgreSQL from PyPI (the same one `easyclaw up`
uses), so a fresh clone needs no installed database. Each test gets its own
database cloned from a migrated template, which takes a few milliseconds.

Only fixtures live here; the helpers they use (and tests import) are in
`tests/support/`.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool, create_pool
from easyclaw.core.jobtypes import JobTypeRegistry, load_registry
from easyclaw.core.migrations import migrate
from tests.support.api_server import ApiServer, serve_api
from tests.support.databases import (
    FAST_UNSAFE_SETTINGS,
    TEMPLATE_DB,
    ScratchDatabases,
    admin_execute,
    create_database,
    drop_database,
    server_directory,
)
from tests.support.ports import free_port
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.support.web_pages import WebServer, web_server

# Any skip whose reason is not in .ci/allowed-skips.txt fails the run.
pytest_plugins = ["tests.support.skip_gate"]

_bucket_numbers = itertools.count()

# Tests using these fixtures start worker processes, build the image or
# synthesize the CDK app, and every test in these folders does one of those:
# they are slow wherever they live, so `make unit` leaves them out. The API
# fuzz test (a server thread, thousands of requests) is slow as a whole file too.
SLOW_FIXTURES = frozenset({"worker_processes", "image", "synthesized"})
SLOW_FOLDERS = tuple(
    Path(__file__).parent / name for name in ("images", "infra", "e2e", "api/test_fuzz.py")
)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`make unit` (-m "not slow") does not even import the slow folders: the CDK's
    import alone starts a Node.js process (about 2 s), schemathesis's takes 0.5 s."""
    unit = " ".join(str(config.getoption("markexpr") or "").split()) == "not slow"
    if unit and any(collection_path.is_relative_to(folder) for folder in SLOW_FOLDERS):
        return True
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    # The imported modules and collected tests live as long as the run: move them
    # out of the garbage collector's sight, or every full collection walks them all.
    gc.freeze()


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses_slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        in_slow_folder = any(item.path.is_relative_to(folder) for folder in SLOW_FOLDERS)
        if uses_slow_fixture or in_slow_folder:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    with server_directory(tmp_path_factory.mktemp("postgres")) as directory:
        server = LocalPostgres(directory, settings=FAST_UNSAFE_SETTINGS)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate")


@pytest.fixture(scope="session")
def template_database(postgres: LocalPostgres) -> str:
    admin_execute(postgres.url(), f"CREATE DATABASE {TEMPLATE_DB}")
    asyncio.run(migrate(postgres.url(TEMPLATE_DB)))
    return TEMPLATE_DB


@pytest.fixture(scope="session")
def scratch_databases(
    postgres: LocalPostgres, template_database: str
) -> Iterator[ScratchDatabases]:
    databases = ScratchDatabases(postgres, template_database)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def database_url(postgres: LocalPostgres, scratch_databases: ScratchDatabases) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = scratch_databases.take()
    try:
        yield postgres.url(name)
    finally:
        scratch_databases.give_back(name)


@pytest.fixture
def empty_database_url(postgres: LocalPostgres) -> Iterator[str]:
    """A database without the schema (for migration tests)."""
    name = create_database(postgres, "template1")
    try:
        yield postgres.url(name)
    finally:
        drop_database(postgres, name)


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
    # boto3's own variable, which the state store and worker processes read too
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    name = f"easyclaw-test-{os.getpid()}-{next(_bucket_numbers)}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def web() -> Iterator[WebServer]:
    """A local web server with real pages (RESEARCH tests)."""
    with web_server() as server:
        yield server


@pytest.fixture
async def api(settings: Settings, registry: JobTypeRegistry) -> AsyncIterator[ApiServer]:
    with_metrics = settings.model_copy(update={"api_metrics_port": free_port()})
    async with serve_api(with_metrics, registry) as server:
        yield server


@pytest.fixture
async def client(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as http:
        yield http


@pytest.fixture
def worker_processes(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(settings=settings, log_dir=tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()
