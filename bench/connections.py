"""Connections and idle load: what idle and busy workers cost the database.

Run with ``make bench-connections`` (or ``python -m bench.connections``). On an
embedded PostgreSQL with ``pg_stat_statements`` loaded (or DATABASE_URL, if it
has the extension), it starts worker processes with every setting at its
default and measures:

* connections each worker process holds (pg_stat_activity by application
  name), idle, and sampled every 10 ms while they drain 20,000 ECHO jobs;
* idle load: statements per second per worker process over a quiet period
  (pg_stat_statements calls, this script's own excluded), and which ones;
* pickup latency of those idle workers: jobs submitted one at a time, from
  the insert to the claim by the database clock (``started_at - created_at``).

It prints the table and replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.common import (
    REPO_ROOT,
    database,
    easyclaw_env,
    machine,
    markdown_table,
    percentile,
    server_version,
    start_processes,
    stop_processes,
    wait_until,
    write_section,
)
from easyclaw.core import queue

WORKER = [sys.executable, "-m", "easyclaw.cli.main", "worker"]
DATA_DIR = REPO_ROOT / ".easyclaw" / "bench-connections-postgres"
PGSS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"}
OWN_QUERIES = ("pg_stat_statements", "pg_stat_activity")


async def worker_connections(conn: psycopg.AsyncConnection[object]) -> Counter[str]:
    cursor = await conn.execute(
        "SELECT application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE 'easyclaw-worker%%'"
    )
    return Counter(str(name) for (name,) in await cursor.fetchall())


async def idle_statements(
    conn: psycopg.AsyncConnection[object], seconds: float
) -> list[tuple[int, str]]:
    """(calls, query) of every statement the workers ran during ``seconds`` of quiet."""
    await conn.execute("SELECT pg_stat_statements_reset()")
    await asyncio.sleep(seconds)
    cursor = await conn.execute(
        "SELECT calls, query FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "ORDER BY calls DESC"
    )
    return [
        (int(calls), " ".join(str(text).split()))
        for calls, text in await cursor.fetchall()
        if not any(own in str(text) for own in OWN_QUERIES)
    ]


def short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


async def pickup(conn: psycopg.AsyncConnection[object], samples: int) -> list[float]:
    latencies: list[float] = []
    await queue.ensure_user(conn, "bench")
    for _ in range(samples + 10):
        await asyncio.sleep(random.uniform(0.02, 0.05))  # the workers go idle again
        job = (await queue.enqueue(conn, user_id="bench", type="ECHO", payload={})).job
        while True:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM started_at - created_at) FROM jobs WHERE id = %s",
                (job.id,),
            )
            row = await cursor.fetchone()
            if row and row[0] is not None:
                latencies.append(float(row[0]) * 1000)
                break
            await asyncio.sleep(0.002)
    return latencies[10:]  # the first few warm up prepared statements


async def busy_connections(
    url: str, conn: psycopg.AsyncConnection[object], jobs: int
) -> tuple[Counter[str], float]:
    """The most connections seen while the workers drain ``jobs``, and the drain's jobs/s."""
    await queue.enqueue_many(conn, user_id="bench", type="ECHO", payloads=[{}] * jobs)
    started = asyncio.get_running_loop().time()
    most: Counter[str] = Counter()
    done = "SELECT NOT EXISTS (SELECT 1 FROM jobs WHERE status IN ('PENDING', 'RUNNING'))"
    waiter = asyncio.create_task(wait_until(done, url, timeout=600, interval=0.05))
    while not waiter.done():
        seen = await worker_connections(conn)
        if sum(seen.values()) > sum(most.values()):
            most = seen
        await asyncio.sleep(0.01)
    await waiter
    return most, jobs / (asyncio.get_running_loop().time() - started)


async def run(url: str, args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]]]:
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-"))
    env = easyclaw_env(url, log_level="WARNING")
    workers = start_processes(WORKER, args.workers, env, log_dir)
    try:
        await wait_until(
            f"SELECT count(*) = {args.workers} FROM pg_stat_activity "
            "WHERE application_name = 'easyclaw-worker-listener'",
            url,
            timeout=60,
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await asyncio.sleep(2)  # start-up statements and first maintenance
            idle = await worker_connections(conn)
            statements = await idle_statements(conn, args.idle_seconds)
            latencies = await pickup(conn, args.pickup_samples)
            busy, rate = await busy_connections(url, conn, args.jobs)
    finally:
        stop_processes(workers)
    per_worker = sum(calls for calls, _ in statements) / args.idle_seconds / args.workers
    rows = [
        [
            "connections per worker process, idle",
            f"**{sum(idle.values()) / args.workers:g}** (target ≤ 2)",
            ", ".join(f"{name}: {count}" for name, count in sorted(idle.items())),
        ],
        [
            f"connections per worker process, draining {args.jobs:,} jobs",
            f"**{sum(busy.values()) / args.workers:g}** (target ≤ 2)",
            "most seen in 10 ms samples: "
            + ", ".join(f"{name}: {count}" for name, count in sorted(busy.items()))
            + f"; drain {rate:,.0f} jobs/s",
        ],
        [
            f"idle statements per worker process, {args.idle_seconds:.0f} s",
            f"**{per_worker:.3f}/s** (target ≤ 0.35)",
            "pg_stat_statements calls, this script's own excluded",
        ],
        [
            f"pickup latency, {len(latencies)} jobs one at a time, {args.workers} idle workers",
            f"p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms",
            f"p95 {percentile(latencies, 0.95):.2f} ms, max {max(latencies):.2f} ms",
        ],
    ]
    breakdown = [
        [f"{calls / args.idle_seconds / args.workers:.3f}", f"`{short(text)}`"]
        for calls, text in statements
    ]
    return rows, breakdown


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--pickup-samples", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    url, server = database(reset=True, data_dir=DATA_DIR, settings=PGSS)
    try:
        rows, breakdown = asyncio.run(run(url, args))
        pg = server_version(url)
    finally:
        if server is not None:
            server.stop()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"## Connections and idle load (`make bench-connections` → `bench/connections.py`, "
        f"{stamp})\n\n"
        f"Machine: {machine()}. PostgreSQL {pg}, embedded, default settings plus "
        f"pg_stat_statements. {args.workers} `easyclaw worker` processes, every setting at "
        "its default (concurrency 16, NOTIFY wake-up, 30 s fallback poll, heartbeat and "
        "maintenance every 10 s, retention every minute), `EASYCLAW_LOG_LEVEL=WARNING`.\n\n"
        + markdown_table(["measurement", "result", "detail"], rows)
        + "\n\nIdle statements per worker process per second, by statement:\n\n"
        + markdown_table(["per second", "statement"], breakdown)
        + "\n"
    )
    print("\n" + body)
    if not args.no_report:
        write_section("bench/connections.py", body)


if __name__ == "__main__":
    main()
