"""What bench/compare.py needs from each system it measures."""

from __future__ import annotations

import abc
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench.common import REPO_ROOT


def create_database(admin_url: str, name: str) -> None:
    """A fresh, empty database on the shared server."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        conn.execute(f"CREATE DATABASE {name}".encode())


def with_database(url: str, name: str) -> str:
    """The same server URL with another database (URLs look like ``…/postgres?host=…``)."""
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


def transactions(url: str) -> int:
    """Committed plus rolled-back transactions of this URL's database so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])


async def wait_for_sessions(url: str, count: int, like: str, timeout: float = 60) -> None:
    """Until ``count`` other sessions of this database run a statement matching ``like``."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query ILIKE %s",
                (like,),
            )
            row = await cursor.fetchone()
            if row and row[0] >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} sessions running {like!r} did not appear")
            await asyncio.sleep(0.05)


class Peer(abc.ABC):
    """One queue system: its workers, how to enqueue, how to tell it is drained."""

    name: str
    """Shown in the table."""
    key: str
    """Short lowercase name: database name suffix, command-line selection."""
    max_latency_samples: int | None = None
    """Fewer pickup samples for systems that poll slowly (each sample waits for a poll)."""
    server_process_names: tuple[str, ...] = ("postgres",)
    """Names the server's processes start with (their CPU per job is measured)."""

    def __init__(self, admin_url: str, work_dir: Path, processes: int, label: str = "") -> None:
        if label:  # one system measured in several configurations in one run
            self.name = f"{self.name} ({label})"
            self.key = f"{self.key}_" + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
        self.admin_url = admin_url
        self.work_dir = work_dir
        self.processes = processes
        self.url = with_database(admin_url, f"bench_{self.key}")
        self.starts_dir = work_dir / f"starts-{self.key}"

    def unavailable(self) -> str | None:
        """Why this system cannot run here (None if it can)."""
        return None

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def settings(self) -> str:
        """How it is run, exactly (markdown)."""

    async def setup(self) -> None:
        create_database(self.admin_url, f"bench_{self.key}")

    @abc.abstractmethod
    async def reset(self) -> None:
        """Empty the queue before a measurement."""

    @abc.abstractmethod
    def worker_command(self) -> list[str]: ...

    def worker_env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("EASYCLAW_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["BENCH_STARTS_DIR"] = str(self.starts_dir)
        return env

    @abc.abstractmethod
    async def wait_ready(self) -> None:
        """Until every worker process is connected and idle."""

    @abc.abstractmethod
    async def enqueue_batch(self, count: int) -> None:
        """Enqueue ``count`` no-op jobs so that they become visible at once."""

    @abc.abstractmethod
    async def drained(self, count: int) -> bool:
        """Whether all ``count`` jobs of the batch have finished."""

    @abc.abstractmethod
    async def enqueue_sample(self, sample: int) -> None:
        """Enqueue one no-op job whose handler records its pickup latency."""

    probe_cost = 2
    """Operations each idle_operations() call adds to the count itself."""

    def idle_operations(self) -> int:
        """A counter of the work idle workers cause at the queue (transactions by default)."""
        return transactions(self.url)

    def start_workers(self, log_dir: Path) -> list[subprocess.Popen[bytes]]:
        self.starts_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        processes = []
        for index in range(self.processes):
            log = (log_dir / f"{self.key}-{index}.log").open("ab")
            processes.append(
                subprocess.Popen(
                    self.worker_command(),
                    env=self.worker_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                )
            )
        return processes

    async def close(self) -> None:  # noqa: B027 - most peers hold nothing to close
        """Release client-side resources."""


def python() -> str:
    return sys.executable


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)
