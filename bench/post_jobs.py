"""POST /jobs throughput and latency of `easyclaw api --workers N`.

Run with ``make bench-post`` (or ``python -m bench.post_jobs``). Starts the API
with N processes (default 2) on an embedded PostgreSQL (default, durable
settings), warms it up, then sends ECHO jobs over keep-alive connections from
a lean client in this process (``bench.common.http_load``) and prints
requests/s with p50/p99 latency for each number of client connections. With
``--profile`` it records the API processes with py-spy (if installed) into
``.easyclaw/bench-post-*.txt`` (py-spy raw stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from bench.common import (
    REPO_ROOT,
    database,
    easyclaw_env,
    http_load,
    machine,
    markdown_table,
    percentile,
    server_version,
    start_processes,
    stop_processes,
    write_section,
)
from easyclaw.cli.local_postgres import free_tcp_port

DATA_DIR = REPO_ROOT / ".easyclaw" / "bench-post-postgres"


def request_bytes() -> bytes:
    body = orjson.dumps({"type": "ECHO", "payload": {"message": "Hello from EasyClaw!"}})
    return (
        b"POST /jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"x-user-id: bench-user\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


async def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def api_pids(parent: int) -> list[int]:
    """The uvicorn worker processes under ``easyclaw api`` (or itself with one process)."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    found = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    return found or [parent]


async def measure(url: str, args: argparse.Namespace) -> list[list[str]]:
    port = free_tcp_port()
    env = easyclaw_env(url, auth_mode="header", api_port=port, log_level="WARNING")
    command = [sys.executable, "-m", "easyclaw.cli.main", "api", "--workers", str(args.processes)]
    api = start_processes(command, 1, env, Path(tempfile.mkdtemp(prefix="easyclaw-bench-")))
    rows = []
    try:
        await wait_for_port(port)
        request = request_bytes()
        await http_load("127.0.0.1", port, request, connections=32, total=2_000)  # warm-up
        for connections in args.connections:
            profilers = []
            if args.profile and shutil.which("py-spy"):
                for pid in api_pids(api[0].pid):
                    out = REPO_ROOT / ".easyclaw" / f"bench-post-{connections}-{pid}.txt"
                    profilers.append(
                        subprocess.Popen(
                            [
                                *("py-spy", "record", "--nonblocking", "-r", "100", "-f", "raw"),
                                *("-p", str(pid), "-o", str(out)),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            result = await http_load(
                "127.0.0.1", port, request, connections=connections, total=args.requests
            )
            for profiler in profilers:
                profiler.send_signal(subprocess.signal.SIGINT)
                profiler.wait()
            ms = [latency * 1000 for latency in result.latencies]
            rate = args.requests / result.seconds
            rows.append(
                [
                    f"{args.processes} API processes, {connections} connections",
                    f"**{rate:,.0f} req/s**, p99 {percentile(ms, 0.99):.1f} ms",
                    f"p50 {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
                    f"{result.errors} errors of {args.requests:,}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    finally:
        stop_processes(api)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs CASCADE")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2, help="easyclaw api --workers")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[16, 32, 64],
        help="client connections (comma list)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy record each run")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    url, server = database(reset=True, data_dir=DATA_DIR)
    try:
        rows = asyncio.run(measure(url, args))
        pg = server_version(url)
    finally:
        if server is not None:
            server.stop()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"## POST /jobs (`make bench-post` → `bench/post_jobs.py`, {stamp})\n\n"
        f"Machine: {machine()}. PostgreSQL {pg}, embedded, default settings (fsync on). "
        f"`easyclaw api --workers {args.processes}` (header auth, "
        "`EASYCLAW_LOG_LEVEL=WARNING`, other settings default); the load client "
        "(`bench.common.http_load`, keep-alive HTTP/1.1, one ECHO job per request) and the "
        f"server share the machine. {args.requests:,} requests per row after 2,000 to warm "
        "up. Goal: ≥ 2,000 req/s with p99 ≤ 50 ms.\n\n"
        + markdown_table(["setup", "result", "detail"], rows)
        + "\n"
    )
    print("\n" + body)
    if not args.no_report:
        write_section("bench/post_jobs.py", body)


if __name__ == "__main__":
    main()
