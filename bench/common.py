"""Shared pieces of the benchmark scripts: a database, worker processes,
a lean HTTP load client, process memory, and the markdown report."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.migrations import migrate

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
BENCH_DATA = REPO_ROOT / ".easyclaw" / "bench-postgres"


def database(
    reset: bool = True, *, data_dir: Path = BENCH_DATA, settings: dict[str, str] | None = None
) -> tuple[str, LocalPostgres | None]:
    """DATABASE_URL if set, else an embedded server with default (durable) settings
    (plus ``settings``) in ``data_dir``."""
    url = os.environ.get("DATABASE_URL")
    server = None
    if not url:
        server = LocalPostgres(data_dir, settings={"max_connections": "200", **(settings or {})})
        server.start()
        url = server.url()
    asyncio.run(migrate(url))
    if reset:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE jobs, workers CASCADE")
            conn.execute("VACUUM ANALYZE jobs")
    return url, server


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} x {cpu}, {memory:.0f} GiB RAM, {system}"


def easyclaw_env(url: str, **settings: Any) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EASYCLAW_")}
    env["DATABASE_URL"] = url
    env["PYTHONPATH"] = str(REPO_ROOT)
    for name, value in settings.items():
        env[f"EASYCLAW_{name.upper()}"] = str(value)
    return env


def start_processes(
    command: Sequence[str], count: int, env: dict[str, str], log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    for index in range(count):
        log = (log_dir / f"{Path(command[-1]).name}-{index}.log").open("wb")
        processes.append(
            subprocess.Popen(list(command), env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    return processes


def stop_processes(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


async def wait_until(query: str, url: str, *, timeout: float, interval: float = 0.1) -> None:
    """Poll a boolean query until it is true."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(query.encode())
            row = await cursor.fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout} s: {query}")
            await asyncio.sleep(interval)


@dataclass
class HttpResult:
    latencies: list[float]
    errors: int
    seconds: float


async def http_load(
    host: str,
    port: int,
    request: bytes,
    *,
    connections: int,
    total: int,
) -> HttpResult:
    """A minimal keep-alive HTTP/1.1 load generator: far less CPU per request than
    a full client library, which matters when client and server share 2 cores."""
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def connection() -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not status_line.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return HttpResult(latencies=latencies, errors=errors, seconds=time.perf_counter() - started)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def append_report(title: str, body: str) -> None:
    BENCHMARKS_MD.parent.mkdir(exist_ok=True)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nResults appended by the scripts under `bench/`.\n"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with BENCHMARKS_MD.open("a") as report:
        report.write(f"\n## {title} ({stamp})\n\n{body.rstrip()}\n")


def python_version() -> str:
    return sys.version.split()[0]


def write_section(script: str, body: str) -> None:
    """Replace ``script``'s marked section of docs/benchmarks.md (append it the first time)."""
    start, end = f"<!-- {script}: start -->", f"<!-- {script}: end -->"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
