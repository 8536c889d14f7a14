"""EasyClaw queue benchmark: prints a table and appends it to docs/benchmarks.md.

Run with ``make bench`` (or ``python -m bench.queue``). Uses DATABASE_URL if
set, else an embedded PostgreSQL with default, durable settings (fsync on).

Measures, on this machine:
* drain: 20,000 ECHO jobs inserted in one transaction while 1 or 2 idle worker
  processes wait; jobs/s from the commit to the last completion (median of 3);
* pickup latency: 200 jobs submitted one at a time to idle workers; the time
  from a job's insert to its claim, both by the database clock;
* POST /jobs: requests/s and latency with 32 concurrent keep-alive connections;
* idle load: transactions per second per idle worker, over 30 s;
* memory: RSS and peak RSS of each worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psycopg

from bench.common import (
    append_report,
    database,
    easyclaw_env,
    http_load,
    machine,
    markdown_table,
    median,
    memory_mib,
    percentile,
    python_version,
    server_version,
    start_processes,
    stop_processes,
    wait_until,
)
from easyclaw.cli.local_postgres import free_tcp_port
from easyclaw.core import queue

WORKER = [sys.executable, "-m", "easyclaw.cli.main", "worker"]
API = [sys.executable, "-m", "easyclaw.cli.main", "api"]


def worker_settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "worker_concurrency": args.concurrency,
        "worker_claim_batch_size": args.batch,
        "log_level": args.log_level,
    }


async def wait_for_workers(url: str, count: int) -> None:
    await wait_until(
        f"SELECT count(*) >= {int(count)} FROM workers WHERE stopped_at IS NULL", url, timeout=60
    )


async def drain_once(
    url: str, jobs: int, processes: int, args: argparse.Namespace
) -> tuple[float, list[float]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, workers CASCADE")
        conn.execute("VACUUM ANALYZE jobs")
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-"))
    workers = start_processes(
        WORKER, processes, easyclaw_env(url, **worker_settings(args)), log_dir
    )
    try:
        await wait_for_workers(url, processes)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await queue.ensure_user(conn, "bench")
            # One transaction: every job becomes visible at the same commit.
            await queue.enqueue_many(
                conn, user_id="bench", type="ECHO", payloads=[{"n": n} for n in range(jobs)]
            )
            cursor = await conn.execute("SELECT clock_timestamp()")
            row = await cursor.fetchone()
            assert row is not None
            committed_at = row[0]
        await wait_until(
            f"SELECT count(*) = {jobs} FROM jobs WHERE status = 'COMPLETED'", url, timeout=600
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - %s), max(attempts) FROM jobs",
                (committed_at,),
            )
            span, max_attempts = await cursor.fetchone()  # type: ignore[misc]
        assert max_attempts == 1, "a no-op job was attempted twice"
        peaks = [memory_mib(process.pid)[1] for process in workers]
        return jobs / float(span), peaks
    finally:
        stop_processes(workers)


async def pickup_latency(url: str, samples: int, args: argparse.Namespace) -> list[float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, workers CASCADE")
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-"))
    workers = start_processes(WORKER, 2, easyclaw_env(url, **worker_settings(args)), log_dir)
    latencies: list[float] = []
    try:
        await wait_for_workers(url, 2)
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as listener,
        ):
            await queue.ensure_user(conn, "bench")
            await listener.execute("LISTEN easyclaw_job_events")
            for _ in range(samples + 10):
                # Let the workers go idle again (they sleep until NOTIFY).
                await asyncio.sleep(random.uniform(0.02, 0.05))
                job = (await queue.enqueue(conn, user_id="bench", type="ECHO", payload={})).job
                async for notify in listener.notifies(timeout=5):
                    if str(job.id) in notify.payload.split(","):
                        break
                cursor = await conn.execute(
                    "SELECT extract(epoch FROM started_at - created_at) FROM jobs WHERE id = %s",
                    (job.id,),
                )
                row = await cursor.fetchone()
                assert row is not None
                assert row[0] is not None
                latencies.append(float(row[0]) * 1000)
        return latencies[10:]  # the first few warm up prepared statements
    finally:
        stop_processes(workers)


async def idle_queries(url: str, seconds: float, args: argparse.Namespace) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        # The POST /jobs measurement leaves thousands of PENDING jobs behind;
        # workers draining them are not idle.
        conn.execute("TRUNCATE jobs, workers CASCADE")
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-"))
    workers = start_processes(WORKER, 2, easyclaw_env(url, **worker_settings(args)), log_dir)
    try:
        await wait_for_workers(url, 2)
        await asyncio.sleep(2)  # let start-up maintenance settle

        def commits() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname = current_database()"
                ).fetchone()
                assert row is not None
                return int(row[0])

        before = commits()
        await asyncio.sleep(seconds)
        after = commits()
        # Each probe is one transaction of its own; statistics lag by up to 0.5 s.
        return max(0, after - before - 2) / seconds / 2
    finally:
        stop_processes(workers)


async def post_jobs(url: str, requests: int, connections: int) -> tuple[float, float, float, int]:
    port = free_tcp_port()
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-"))
    env = easyclaw_env(url, auth_mode="header", api_port=port, log_level="WARNING")
    api = start_processes(API, 1, env, log_dir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        body = orjson.dumps({"type": "ECHO", "payload": {"message": "Hello from EasyClaw!"}})
        request = (
            b"POST /jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            b"x-user-id: bench-user\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await http_load("127.0.0.1", port, request, connections=connections, total=500)  # warm-up
        result = await http_load(
            "127.0.0.1", port, request, connections=connections, total=requests
        )
        ms = [latency * 1000 for latency in result.latencies]
        return requests / result.seconds, percentile(ms, 0.5), percentile(ms, 0.99), result.errors
    finally:
        stop_processes(api)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="drain runs per process count (median)")
    parser.add_argument("--concurrency", type=int, default=256, help="EASYCLAW_WORKER_CONCURRENCY")
    parser.add_argument("--batch", type=int, default=256, help="EASYCLAW_WORKER_CLAIM_BATCH_SIZE")
    parser.add_argument("--log-level", default="INFO", help="workers' EASYCLAW_LOG_LEVEL")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--post-requests", type=int, default=10_000)
    parser.add_argument(
        "--post-connections",
        default="16,32",
        help="concurrent keep-alive connections of the POST /jobs client (comma list)",
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--no-report", action="store_true", help="print only; do not append to docs"
    )
    args = parser.parse_args()

    url, server = database()
    try:
        rows: list[list[str]] = []
        peaks: list[float] = []
        for processes in (1, 2):
            rates = []
            for _ in range(args.runs):
                rate, run_peaks = asyncio.run(drain_once(url, args.jobs, processes, args))
                rates.append(rate)
                peaks += run_peaks
            target = " (target ≥ 8,000)" if processes == 2 else ""
            rows.append(
                [
                    f"drain {args.jobs:,} ECHO jobs, {processes} worker process(es)",
                    f"{median(rates):,.0f} jobs/s{target}",
                    "runs: " + ", ".join(f"{rate:,.0f}" for rate in rates),
                ]
            )
        latencies = asyncio.run(pickup_latency(url, args.latency_samples, args))
        rows.append(
            [
                f"pickup latency, {len(latencies)} jobs one at a time, 2 idle workers",
                f"p50 {percentile(latencies, 0.5):.2f} ms, "
                f"p99 {percentile(latencies, 0.99):.2f} ms (target ≤ 3 / ≤ 20)",
                f"p95 {percentile(latencies, 0.95):.2f} ms, max {max(latencies):.2f} ms",
            ]
        )
        for connections in map(int, args.post_connections.split(",")):
            rate, p50, p99, errors = asyncio.run(post_jobs(url, args.post_requests, connections))
            rows.append(
                [
                    f"POST /jobs, {connections} connections, 1 API process",
                    f"{rate:,.0f} req/s, p99 {p99:.1f} ms (target ≥ 1,000, ≤ 50)",
                    f"p50 {p50:.1f} ms, {errors} errors of {args.post_requests:,}",
                ]
            )
        idle = asyncio.run(idle_queries(url, args.idle_seconds, args))
        rows.append(
            [
                f"idle load per worker process, {args.idle_seconds:.0f} s",
                f"{idle:.2f} queries/s (target ≤ 1)",
                "transactions counted by pg_stat_database",
            ]
        )
        rows.append(
            [
                "worker memory (peak RSS per process)",
                f"{max(peaks):.0f} MiB max",
                f"median {median(peaks):.0f} MiB over {len(peaks)} processes",
            ]
        )
        table = markdown_table(["measurement", "result", "detail"], rows)
        setup = (
            f"Machine: {machine()}. PostgreSQL {server_version(url)} "
            f"({'DATABASE_URL' if server is None else 'embedded, default settings, fsync on'}), "
            f"Python {python_version()}, client and server on the same machine.\n"
            f"Workers: EASYCLAW_WORKER_CONCURRENCY={args.concurrency}, "
            f"EASYCLAW_WORKER_CLAIM_BATCH_SIZE={args.batch}, EASYCLAW_LOG_LEVEL={args.log_level} "
            "(per-job lines are DEBUG); other settings default."
        )
        print(setup + "\n\n" + table)
        if not args.no_report:
            append_report("Queue benchmark (bench/queue.py)", setup + "\n\n" + table)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
