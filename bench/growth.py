"""Growth: do claims, the autoscaler's query and queue_stats stay flat as finished jobs pile up?

Run with ``make growth`` (or ``python -m bench.growth``). With 10k, 100k, 1M
and 10M finished jobs in the table (bulk-inserted with generate_series,
finished 8-30 days ago), and again after retention has deleted them all, it
measures:

* claim throughput: 20,000 PENDING jobs claimed 256 at a time and completed
  in batches by this process (the database side of a worker, no handlers);
* the KEDA scaler query (charts/easyclaw/files/scaler-query.sql) and the
  queue_stats query behind ``GET /stats``, the API's queue gauges
  (``/metrics``) and the metrics mirror: median and p99 over repeated runs,
  and whether its finished totals equal a row-by-row count;
* the fold that keeps queue_stats short to read (workers' maintenance);
* EXPLAIN (ANALYZE, BUFFERS) of the claim, the scaler query and queue_stats.

Before the sizes it measures what the finished-job counting triggers
(migration 0005) cost the claim + complete loop: runs alternate with the
triggers enabled and disabled, in the same run.

It prints the table and plans and replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.common import (
    REPO_ROOT,
    database,
    machine,
    markdown_table,
    median,
    percentile,
    server_version,
    write_section,
)
from easyclaw.core import queue
from easyclaw.core.models import JobStatus, Outcome
from easyclaw.core.queries import query

SCALER_SQL = REPO_ROOT / "charts" / "easyclaw" / "files" / "scaler-query.sql"
SCALER_CAP = 250  # the chart's default maxReplicaCount 50 x targetQueryValue 5
USER = "growth"
WORKER = "growth-worker"
RETENTION_HOURS = 168

Conn = psycopg.AsyncConnection[Any]

INSERT_FINISHED = """
INSERT INTO jobs (id, user_id, type, input_payload, result_payload, error, status, attempts,
                  created_at, updated_at, started_at, finished_at, run_at)
SELECT gen_random_uuid(), %(user)s, 'ECHO', '{"n": 1}', r.result, r.error, r.status, 1,
       r.at, r.at, r.at, r.at, r.at
FROM (
    SELECT now() - interval '8 days' - random() * interval '22 days' AS at,
           CASE WHEN n %% 50 = 0 THEN 'FAILED' WHEN n %% 50 = 1 THEN 'CANCELLED'
                ELSE 'COMPLETED' END AS status,
           CASE WHEN n %% 50 > 1 THEN '{"n": 1}'::jsonb END AS result,
           CASE WHEN n %% 50 = 0 THEN 'boom' END AS error
    FROM generate_series(1, %(count)s) AS n
) AS r
"""


def scaler_query() -> str:
    """The chart's query with its cap filled in (or the same query, if the chart is absent)."""
    if SCALER_SQL.exists():
        text = SCALER_SQL.read_text()
    else:
        text = (
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'PENDING' "
            "AND run_at <= now() LIMIT :cap) AS ready) + (SELECT count(*) FROM (SELECT 1 "
            "FROM jobs WHERE status = 'RUNNING' LIMIT :cap) AS running)"
        )
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).replace(":cap", str(SCALER_CAP)).strip()


async def fetch_value(conn: Conn, sql: str, params: Any = None) -> Any:
    cursor = await conn.execute(sql.encode(), params)
    row = await cursor.fetchone()
    return row[0] if row else None


async def finished_count(conn: Conn) -> int:
    return int(
        await fetch_value(
            conn, "SELECT count(*) FROM jobs WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')"
        )
    )


async def claim_throughput(conn: Conn, jobs: int) -> tuple[float, str]:
    """jobs/s of claim + batched completion; and the claim's plan with the backlog in place."""
    await queue.enqueue_many(conn, user_id=USER, type="ECHO", payloads=[{}] * jobs)
    await conn.execute("ANALYZE jobs")
    plan = await explain(
        conn,
        query("claim_jobs"),
        {"worker_id": WORKER, "types": ["ECHO"], "limit": 256, "lease_seconds": 30.0},
    )
    started = time.perf_counter()
    done = 0
    while done < jobs:
        claimed = await queue.claim_jobs(
            conn, worker_id=WORKER, types=["ECHO"], limit=256, lease_seconds=30.0
        )
        if not claimed:
            raise RuntimeError(f"claimed nothing after {done} of {jobs} jobs")
        await queue.finish_jobs(
            conn,
            worker_id=WORKER,
            outcomes=[
                Outcome(job_id=j.id, attempt=j.attempt, status=JobStatus.COMPLETED, result={})
                for j in claimed
            ],
        )
        done += len(claimed)
    rate = jobs / (time.perf_counter() - started)
    # Keep the finished count at the size being measured.
    await conn.execute("DELETE FROM jobs WHERE finished_at > now() - interval '1 day'")
    return rate, plan


async def explain(conn: Conn, sql: str, params: Any = None) -> str:
    """EXPLAIN ANALYZE inside a rolled-back transaction (the claim must not stick)."""
    await conn.execute("BEGIN")
    try:
        cursor = await conn.execute(
            b"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) " + sql.encode(), params
        )
        return "\n".join(row[0] for row in await cursor.fetchall())
    finally:
        await conn.execute("ROLLBACK")


async def timed(conn: Conn, sql: str, params: Any, repeats: int) -> tuple[float, float]:
    """Median and p99 milliseconds of a read query."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        cursor = await conn.execute(sql.encode(), params)
        await cursor.fetchall()
        times.append((time.perf_counter() - started) * 1000)
    return median(times), percentile(times, 0.99)


COUNTING_TRIGGERS = ("jobs_inserted_count", "jobs_updated_count", "jobs_deleted_count")


async def counting_trigger_cost(
    conn: Conn, jobs: int, rounds: int
) -> tuple[list[float], list[float]]:
    """claim + complete jobs/s with the counting triggers on and off, alternating."""
    on, off = [], []
    for _ in range(rounds):
        for enabled, rates in ((True, on), (False, off)):
            verb = "ENABLE" if enabled else "DISABLE"
            for trigger in COUNTING_TRIGGERS:
                await conn.execute(f"ALTER TABLE jobs {verb} TRIGGER {trigger}".encode())
            try:
                rate, _ = await claim_throughput(conn, jobs)
            finally:
                for trigger in COUNTING_TRIGGERS:
                    await conn.execute(f"ALTER TABLE jobs ENABLE TRIGGER {trigger}".encode())
            rates.append(rate)
    return on, off


async def totals_are_exact(conn: Conn) -> bool:
    stats = await queue.queue_stats(conn)
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), "
        "count(*) FILTER (WHERE status = 'FAILED'), "
        "count(*) FILTER (WHERE status = 'CANCELLED') FROM jobs"
    )
    row = await cursor.fetchone()
    return row == (stats.completed, stats.failed, stats.cancelled)


async def measure(conn: Conn, label: str, args: argparse.Namespace) -> tuple[list[str], str]:
    finished = await finished_count(conn)
    rate, claim_plan = await claim_throughput(conn, args.claim_jobs)
    fold_ms = await timed(conn, query("fold_job_status_changes"), None, 20)
    # A realistic backlog while the counts run: some ready, some running.
    await queue.enqueue_many(conn, user_id=USER, type="ECHO", payloads=[{}] * 1000)
    await queue.claim_jobs(conn, worker_id=WORKER, types=["ECHO"], limit=100, lease_seconds=600)
    await conn.execute("ANALYZE jobs")
    scaler = scaler_query()
    scaler_ms = await timed(conn, scaler, None, args.repeats)
    stats_params = {"worker_alive_seconds": 60}
    stats_ms = await timed(conn, query("queue_stats"), stats_params, args.repeats)
    scaler_plan = await explain(conn, scaler)
    stats_plan = await explain(conn, query("queue_stats"), stats_params)
    exact = await totals_are_exact(conn)
    await conn.execute("DELETE FROM jobs WHERE finished_at IS NULL")
    row = [
        label,
        f"{finished:,}",
        f"{rate:,.0f}",
        f"{scaler_ms[0]:.2f} / {scaler_ms[1]:.2f}",
        f"{stats_ms[0]:.2f} / {stats_ms[1]:.2f}",
        "yes" if exact else "**no**",
        f"{fold_ms[0]:.2f}",
    ]
    plans = (
        f"#### {label}: claim of 256 with {args.claim_jobs:,} pending\n\n```\n{claim_plan}\n```\n\n"
        f"#### {label}: scaler query with 1,000 jobs pending or running\n\n"
        f"```\n{scaler_plan}\n```\n\n"
        f"#### {label}: queue_stats\n\n```\n{stats_plan}\n```"
    )
    print(" | ".join(row), flush=True)
    return row, plans


async def run(
    url: str, args: argparse.Namespace
) -> tuple[list[list[str]], list[str], str, tuple[list[float], list[float]]]:
    rows, plans = [], []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await queue.ensure_user(conn, USER)
        triggers = await counting_trigger_cost(conn, args.claim_jobs, args.trigger_rounds)
        print(f"claim + complete with counting triggers on {triggers[0]}, off {triggers[1]}")
        for size in args.sizes:
            missing = size - await finished_count(conn)
            started = time.perf_counter()
            while missing > 0:  # in chunks: each statement's trigger counts its rows
                chunk = min(missing, 1_000_000)
                await conn.execute(INSERT_FINISHED.encode(), {"user": USER, "count": chunk})
                missing -= chunk
            await conn.execute("VACUUM ANALYZE jobs")
            print(f"{size:,} finished jobs in place ({time.perf_counter() - started:.0f} s)")
            row, plan = await measure(conn, f"{size:,} finished", args)
            rows.append(row)
            plans.append(plan)
        started = time.perf_counter()
        deleted = await queue.delete_finished_jobs(
            conn, older_than_seconds=RETENTION_HOURS * 3600, batch_size=1000, max_batches=100_000
        )
        retention = (
            f"Retention (`delete_finished_jobs`, {RETENTION_HOURS} h, batches of 1,000) "
            f"deleted {deleted:,} jobs in {time.perf_counter() - started:.1f} s; the row "
            "after it is measured before any VACUUM, with the dead rows still in the table "
            "and its indexes."
        )
        print(retention, flush=True)
        await conn.execute("ANALYZE jobs")
        row, plan = await measure(conn, "after retention", args)
        rows.append(row)
        plans.append(plan)
    return rows, plans, retention, triggers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[10_000, 100_000, 1_000_000, 10_000_000],
    )
    parser.add_argument("--trigger-rounds", type=int, default=3)
    parser.add_argument("--claim-jobs", type=int, default=20_000)
    parser.add_argument(
        "--repeats", type=int, default=200, help="runs of the scaler query and queue_stats"
    )
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    url, server = database(reset=True)
    try:
        rows, plans, retention, (on, off) = asyncio.run(run(url, args))
        pg = server_version(url)
    finally:
        if server is not None:
            server.stop()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = markdown_table(
        [
            "finished jobs in the table",
            "count",
            "claim + complete, jobs/s",
            "scaler query ms (median / p99)",
            "queue_stats ms (median / p99)",
            "totals exact",
            "fold ms",
        ],
        rows,
    )
    trigger_table = markdown_table(
        ["counting triggers", "claim + complete jobs/s (median)", "runs"],
        [
            ["enabled", f"{median(on):,.0f}", ", ".join(f"{rate:,.0f}" for rate in on)],
            ["disabled", f"{median(off):,.0f}", ", ".join(f"{rate:,.0f}" for rate in off)],
        ],
    )
    body = (
        f"## Growth (`make growth` → `bench/growth.py`, {stamp})\n\n"
        f"Machine: {machine()}. PostgreSQL {pg}, embedded, default settings. Claims: "
        f"{args.claim_jobs:,} PENDING jobs claimed 256 at a time and completed in batches "
        "by one connection (no worker processes). Scaler query: "
        f"`charts/easyclaw/files/scaler-query.sql` with `:cap` = {SCALER_CAP}, "
        f"{args.repeats} runs, with 1,000 jobs pending or running.\n\n"
        f"{table}\n\n{retention}\n\n"
        "What the finished-job counting triggers (migration 0005) cost the claim + "
        f"complete loop, alternating runs with them enabled and disabled ({args.claim_jobs:,} "
        "jobs each, before the finished jobs are inserted):\n\n"
        f"{trigger_table}\n\n"
        "<details><summary>Query plans (EXPLAIN ANALYZE, BUFFERS)</summary>\n\n"
        + "\n\n".join(plans)
        + "\n\n</details>\n"
    )
    print("\n" + body)
    if not args.no_report:
        write_section("bench/growth.py", body)


if __name__ == "__main__":
    main()
