"""What the drills share: processes, counting, reports."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import REPO_ROOT

Conn = psycopg.AsyncConnection[Any]
USER = "drills"
JOB_TYPES = "bench.drills.jobtypes"


def easyclaw_env(url: str, **settings: object) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EASYCLAW_")}
    env["DATABASE_URL"] = url
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env["EASYCLAW_JOB_TYPE_MODULES"] = JOB_TYPES
    for name, value in settings.items():
        env[f"EASYCLAW_{name.upper()}"] = str(value)
    return env


@dataclass
class Processes:
    """``easyclaw`` child processes, each logging to a file of its own."""

    command: str
    env: dict[str, str]
    log_dir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        env = {**self.env, "EASYCLAW_WORKER_NAME": name}
        process = subprocess.Popen(
            [sys.executable, "-m", "easyclaw.cli.main", self.command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.started.append(process)
        return process

    def stop_all(self, timeout: float = 30) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def fetch_value(conn: Conn, sql: str, params: Any = None) -> Any:
    cursor = await conn.execute(sql.encode(), params)
    row = await cursor.fetchone()
    return row[0] if row else None


async def status_counts(conn: Conn) -> dict[str, int]:
    cursor = await conn.execute("SELECT status, count(*) FROM jobs GROUP BY status")
    return {status: count for status, count in await cursor.fetchall()}


async def poll(
    condition: Callable[[], Awaitable[Any]], *, timeout: float, interval: float = 0.1
) -> Any:
    """Until ``condition()`` returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout:g} s")
        await asyncio.sleep(interval)


async def live_workers(conn: Conn) -> int:
    return int(await fetch_value(conn, "SELECT count(*) FROM workers WHERE stopped_at IS NULL"))


@dataclass
class Report:
    """What a drill counted, and what it found wrong (empty: every promise held)."""

    drill: str
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def print(self) -> None:
        verdict = "OK" if not self.problems else "FAILED"
        print(f"drill {self.drill}: {verdict}", flush=True)
        for name, value in self.counts.items():
            print(f"  {name}: {value}", flush=True)
        for problem in self.problems:
            print(f"  PROBLEM: {problem}", flush=True)
