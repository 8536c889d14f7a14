"""Long-poll capacity: many ``GET /jobs/{id}?wait=N`` waiters plus ordinary traffic
against one real `easyclaw api` process.

    make bench-longpoll             # 10,000 waiters (python -m bench.longpoll --help)

What it does, with a real PostgreSQL (embedded, or DATABASE_URL) and real
processes:

1. enqueues one PENDING ECHO job per waiter (no worker runs yet);
2. starts ordinary traffic, paced: GET /jobs/{id}, GET /jobs?limit=20 and
   POST /jobs over a few keep-alive connections, and /healthz on its own;
3. opens the waiters, each its own connection, 2,000 a second (bursts of
   ``--burst`` every 50 ms; faster, the kernel's accept queue overflows on a
   loaded two-core machine), and holds them for ``--hold`` seconds;
4. starts worker processes, which finish every job; each waiter must be
   answered with its job COMPLETED;
5. prints one table: 503s (and any other failure), latency of the ordinary
   calls and of /healthz while the waiters wait, how long the waiters took to
   be answered once their jobs finished, and the API process's memory.

Each waiter is a socket in this process and one in the API process, so both
raise their open-file limit (``RLIMIT_NOFILE``) up to the hard limit
(``ulimit -Hn``); the API process does that itself (EASYCLAW_API_MAX_CONNECTIONS).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import uvloop

from bench.common import (
    append_report,
    database,
    easyclaw_env,
    machine,
    markdown_table,
    memory_mib,
    percentile,
    python_version,
    server_version,
    start_processes,
    stop_processes,
)
from easyclaw.cli.local_postgres import free_tcp_port
from easyclaw.core import queue

API = [sys.executable, "-m", "easyclaw.cli.main", "api"]
WORKER = [sys.executable, "-m", "easyclaw.cli.main", "worker"]
USER = "longpoll-bench"
HOST = "127.0.0.1"


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft limit on open files towards ``needed``; the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return needed
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@dataclass
class Calls:
    """Outcomes of one kind of request: latencies (s) and statuses."""

    latencies: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0  # no HTTP answer at all (connection refused, reset)
    failure_kinds: dict[str, int] = field(default_factory=dict)

    def fail(self, error: BaseException, after: float = 0.0) -> None:
        self.failures += 1
        kind = f"{type(error).__name__} after {after:.0f} s"
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1

    def add(self, status: int, latency: float, started: float = 0.0) -> None:
        self.latencies.append(latency)
        self.started.append(started)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def between(self, start: float, end: float) -> Calls:
        """The calls started in [start, end)."""
        kept = Calls()
        for began, latency in zip(self.started, self.latencies, strict=True):
            if start <= began < end:
                kept.latencies.append(latency)
                kept.started.append(began)
        return kept

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def not_ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: bench\r\nx-user-id: {USER}\r\n\r\n".encode()


def post_job() -> bytes:
    body = orjson.dumps({"type": "ECHO", "payload": {"message": "ordinary"}})
    return (
        b"POST /jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"x-user-id: {USER}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def paced_client(
    port: int,
    requests: list[tuple[str, bytes]],
    calls: dict[str, Calls],
    interval: float,
    stop: asyncio.Event,
) -> None:
    """One keep-alive connection sending one request every ``interval`` seconds
    (open loop: a slow answer does not slow the schedule down, it is late)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    next_at = time.perf_counter()
    turn = 0
    try:
        while not stop.is_set():
            kind, request = requests[turn % len(requests)]
            turn += 1
            started = time.perf_counter()
            try:
                writer.write(request)
                status, _ = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError) as error:
                calls[kind].fail(error)
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            calls[kind].add(status, time.perf_counter() - started, started)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        writer.close()


async def waiter(
    port: int, job_id: str, wait: float, calls: Calls, answered: list[tuple[float, str]]
) -> None:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as error:
        calls.fail(error, time.perf_counter() - started)
        return
    try:
        writer.write(get(f"/jobs/{job_id}?wait={wait:g}"))
        status, body = await read_response(reader)
    except (OSError, asyncio.IncompleteReadError) as error:
        calls.fail(error, time.perf_counter() - started)
        return
    finally:
        writer.close()
    calls.add(status, time.perf_counter() - started)
    if status == 200:
        answered.append((time.perf_counter(), orjson.loads(body)["status"]))


async def run(url: str, args: argparse.Namespace) -> tuple[list[list[str]], str]:
    port = free_tcp_port()
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-longpoll-"))
    api_env = easyclaw_env(
        url,
        auth_mode="header",
        api_port=port,
        log_level="WARNING",
        api_max_connections=args.waiters + 1000,
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE jobs, workers CASCADE")
        await queue.ensure_user(conn, USER)
        await queue.enqueue_many(
            conn, user_id=USER, type="ECHO", payloads=[{"n": n} for n in range(args.waiters)]
        )
        cursor = await conn.execute("SELECT id::text FROM jobs ORDER BY id")
        job_ids = [row[0] for row in await cursor.fetchall()]
    api = start_processes(API, 1, api_env, log_dir)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        rss_idle, _ = memory_mib(api[0].pid)

        ordinary = {"GET /jobs/{id}": Calls(), "GET /jobs": Calls(), "POST /jobs": Calls()}
        healthz = {"/healthz": Calls()}
        stop = asyncio.Event()
        requests = [
            ("GET /jobs/{id}", get(f"/jobs/{random.choice(job_ids)}")),
            ("GET /jobs", get("/jobs?limit=20")),
            ("POST /jobs", post_job()),
        ]
        interval = args.connections / args.rate
        traffic = [
            asyncio.create_task(paced_client(port, requests, ordinary, interval, stop))
            for _ in range(args.connections)
        ]
        traffic.append(
            asyncio.create_task(
                paced_client(port, [("/healthz", get("/healthz"))], healthz, 0.05, stop)
            )
        )

        waiters = Calls()
        answered: list[tuple[float, str]] = []
        opened_at = time.perf_counter()
        polls = []
        for start in range(0, len(job_ids), args.burst):
            polls += [
                asyncio.create_task(waiter(port, job_id, args.wait, waiters, answered))
                for job_id in job_ids[start : start + args.burst]
            ]
            await asyncio.sleep(0.05)  # let the listen backlog drain between bursts
        opening = time.perf_counter() - opened_at
        await asyncio.sleep(args.hold)
        rss_held, _ = memory_mib(api[0].pid)
        early = len(answered)

        # Finish every job: the waiters must be answered with COMPLETED.
        worker_env = easyclaw_env(
            url, worker_concurrency=256, worker_claim_batch_size=256, log_level="WARNING"
        )
        completing_at = time.perf_counter()
        workers = start_processes(WORKER, args.workers, worker_env, log_dir)
        await asyncio.wait_for(asyncio.gather(*polls), timeout=args.wait + 30)
        all_answered = time.perf_counter() - completing_at
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - min(finished_at)) FROM jobs"
                " WHERE id = ANY(%s::uuid[])",
                (job_ids,),
            )
            row = await cursor.fetchone()
            finishing = float(row[0] or 0) if row else 0.0
        stop.set()
        await asyncio.gather(*traffic)
        _, rss_peak = memory_mib(api[0].pid)
    finally:
        stop_processes(workers)
        stop_processes(api)

    completed = sum(1 for _, status in answered if status == "COMPLETED")
    all_calls = [*ordinary.values(), *healthz.values(), waiters]
    unavailable = sum(calls.count(503) for calls in all_calls)
    failures = sum(calls.failures for calls in all_calls)
    merged = Calls()
    for calls in ordinary.values():
        merged.latencies += calls.latencies
        merged.started += calls.started
    waiting = merged.between(opened_at, completing_at)
    completing = merged.between(completing_at, float("inf"))
    probes = healthz["/healthz"].between(opened_at, completing_at)
    rows = [
        [
            "503 answers (all requests)",
            f"**{unavailable}**",
            f"other non-2xx: {sum(c.not_ok() for c in all_calls) - unavailable}, "
            f"no answer: {failures}"
            + "".join(f" ({kind}: {n})" for c in all_calls for kind, n in c.failure_kinds.items()),
        ],
        [
            f"waiters answered COMPLETED (of {args.waiters:,})",
            f"{completed:,}",
            f"answered before any job finished: {early} (must be 0)",
        ],
        [
            "ordinary calls while the waiters arrive and wait",
            f"**p50 {waiting.ms(0.5):.1f} ms, p99 {waiting.ms(0.99):.1f} ms** (target p99 ≤ 1 s)",
            f"{len(waiting.latencies):,} calls; whole run: "
            + ", ".join(
                f"{kind} {calls.count(200) + calls.count(201):,} ok, p99 {calls.ms(0.99):.0f} ms"
                for kind, calls in ordinary.items()
            ),
        ],
        [
            "ordinary calls while the workers start and the waiters are answered",
            f"p50 {completing.ms(0.5):.1f} ms, p99 {completing.ms(0.99):.1f} ms",
            f"{len(completing.latencies):,} calls",
        ],
        [
            "/healthz while the waiters arrive and wait",
            f"**p99 {probes.ms(0.99):.1f} ms**",
            f"p50 {probes.ms(0.5):.1f} ms, {len(probes.latencies):,} calls",
        ],
        [
            "waiters opened",
            f"{args.waiters:,} in {opening:.1f} s",
            f"bursts of {args.burst}, held {args.hold:g} s with wait={args.wait:g}",
        ],
        [
            "all waiters answered after the workers started",
            f"{all_answered:.1f} s",
            f"the {args.workers} workers finished the jobs within {finishing:.1f} s of each other",
        ],
        [
            "API process memory (RSS)",
            f"{rss_held:.0f} MiB holding {args.waiters:,} waiters",
            f"{rss_idle:.0f} MiB idle before, peak {rss_peak:.0f} MiB",
        ],
    ]
    detail = (
        f"Ordinary traffic: {args.rate:g} requests/s over {args.connections} keep-alive "
        "connections (GET /jobs/{id}, GET /jobs?limit=20, POST /jobs in turn, paced), "
        "and /healthz 20 times a second on its own connection."
    )
    return rows, detail


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--wait", type=float, default=60.0, help="each waiter's ?wait=")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds all waiters wait")
    parser.add_argument(
        "--burst",
        type=int,
        default=100,
        help="waiters opened at once, every 50 ms (faster overflows the kernel's accept "
        "queue on a loaded machine: some connections are then reset after ~15 s)",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="ordinary requests/s")
    parser.add_argument("--connections", type=int, default=4, help="ordinary connections")
    parser.add_argument("--workers", type=int, default=2, help="worker processes that finish")
    parser.add_argument(
        "--no-report", action="store_true", help="print only; do not append to docs"
    )
    args = parser.parse_args()
    limit = raise_open_file_limit(args.waiters + 1000)
    if limit < args.waiters + 100:
        parser.error(
            f"this process may open only {limit} files (ulimit -Hn); lower --waiters "
            "or raise the hard limit"
        )

    url, server = database()
    try:
        rows, detail = uvloop.run(run(url, args))
        version = server_version(url)
    finally:
        if server is not None:
            server.stop()
    table = markdown_table(["measurement", "result", "detail"], rows)
    print(table)
    if not args.no_report:
        append_report(
            "Long-poll capacity (`make bench-longpoll` → `bench/longpoll.py`)",
            f"Machine: {machine()}. PostgreSQL {version}, Python {python_version()}, "
            "client, API, workers and database on the same machine. One `easyclaw api` "
            "process (default pool: 10 connections); open-file limits raised to "
            f"{limit:,} in the client (the API raises its own).\n\n{detail}\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
