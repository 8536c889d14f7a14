"""Scheduling benchmark: fair share between users, and what keys cost the drain.

Run with ``make bench-fairness`` (or ``python -m bench.fairness``); prints the
tables and writes the "Fairness" section of docs/benchmarks.md. Uses
DATABASE_URL if set, else an embedded PostgreSQL with default, durable settings.

1. **B behind A.** 2 worker processes x 16 slots. User A submits 5,000 jobs of
   50 ms; once A's jobs fill the workers, user B submits 50. B's wait is the
   time from B's submission to each B job's start (p50, p99), and B is done
   when B's last job finished; measured with fair share on (the default) and
   off (``EASYCLAW_FAIR_SHARE=false``: global priority order, as before).
2. **Drain.** 20,000 no-op ECHO jobs inserted in one transaction while 2 idle
   worker processes (concurrency and claim batch 256, as ``bench/queue.py``)
   wait; jobs/s from the commit to the last completion, median of the runs:
   without keys (fair share on and off), with a key per job (20,000
   one-message conversations), and with 2,000 keys of 10 jobs each (2,000
   conversations submitted interleaved, each running one job at a time).
   ``--baseline-python`` runs the no-key drain also with another checkout's
   interpreter (e.g. main before scheduling, in its own venv) on a database
   migrated by that checkout, alternating with this one: before vs after, in
   one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

from bench.common import (
    database,
    easyclaw_env,
    machine,
    markdown_table,
    median,
    percentile,
    python_version,
    server_version,
    start_processes,
    stop_processes,
    wait_until,
    write_section,
)
from easyclaw.core import queue
from easyclaw.core.ids import uuid7
from easyclaw.core.queries import query

A_JOBS, B_JOBS, JOB_SECONDS = 5000, 50, 0.05
SLEEP = {"seconds": JOB_SECONDS}


def worker_command(python: str = sys.executable) -> list[str]:
    return [python, "-m", "easyclaw.cli.main", "worker"]


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, workers CASCADE")
        conn.execute("VACUUM ANALYZE jobs")


async def wait_for_workers(url: str, count: int) -> None:
    await wait_until(
        f"SELECT count(*) >= {int(count)} FROM workers WHERE stopped_at IS NULL", url, timeout=60
    )


# ---------------------------------------------------------------- B behind A


@dataclass
class Fairness:
    fair_share: bool
    b_wait_p50: float
    b_wait_p99: float
    b_done: float
    a_done_when_b_done: int


async def b_behind_a(url: str, *, fair_share: bool) -> Fairness:
    reset(url)
    env = easyclaw_env(
        url,
        worker_concurrency=16,
        fair_share=str(fair_share).lower(),
        log_level="WARNING",
        job_type_modules="bench.jobtypes",
    )
    workers = start_processes(worker_command(), 2, env, Path(tempfile.mkdtemp()))
    try:
        await wait_for_workers(url, 2)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for user in ("user-a", "user-b"):
                await queue.ensure_user(conn, user)
            await queue.enqueue_many(
                conn, user_id="user-a", type="BENCH_SLEEP", payloads=[SLEEP] * A_JOBS
            )
            await wait_until(
                "SELECT count(*) >= 24 FROM jobs WHERE user_id = 'user-a' AND status = 'RUNNING'",
                url,
                timeout=60,
                interval=0.01,
            )
            await queue.enqueue_many(
                conn, user_id="user-b", type="BENCH_SLEEP", payloads=[SLEEP] * B_JOBS
            )
            await wait_until(
                f"SELECT count(*) = {B_JOBS} FROM jobs "
                "WHERE user_id = 'user-b' AND status = 'COMPLETED'",
                url,
                timeout=600,
                interval=0.02,
            )
            cursor = await conn.execute(
                "SELECT extract(epoch FROM started_at - created_at) FROM jobs "
                "WHERE user_id = 'user-b'"
            )
            waits = [float(wait) for (wait,) in await cursor.fetchall()]
            cursor = await conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - min(created_at)), max(finished_at) "
                "FROM jobs WHERE user_id = 'user-b'"
            )
            row = await cursor.fetchone()
            assert row is not None
            b_done, b_finished = float(row[0]), row[1]
            cursor = await conn.execute(
                "SELECT count(*) FROM jobs WHERE user_id = 'user-a' AND status = 'COMPLETED' "
                "AND finished_at <= %s",
                (b_finished,),
            )
            a_done = (await cursor.fetchone() or (0,))[0]
        return Fairness(
            fair_share=fair_share,
            b_wait_p50=percentile(waits, 0.50),
            b_wait_p99=percentile(waits, 0.99),
            b_done=b_done,
            a_done_when_b_done=int(a_done),
        )
    finally:
        stop_processes(workers)


# ---------------------------------------------------------------- drain


@dataclass(frozen=True)
class DrainCase:
    label: str
    keys: str  # "none", "each", "chains"
    fair_share: bool = True
    baseline: bool = False


async def drain_once(url: str, case: DrainCase, jobs: int, python: str) -> float:
    reset(url)
    settings: dict[str, object] = {
        "worker_concurrency": 256,
        "worker_claim_batch_size": 256,
        "log_level": "WARNING",
    }
    if not case.baseline:
        settings["fair_share"] = str(case.fair_share).lower()
    workers = start_processes(
        worker_command(python), 2, easyclaw_env(url, **settings), Path(tempfile.mkdtemp())
    )
    try:
        await wait_for_workers(url, 2)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await queue.ensure_user(conn, "bench")
            payloads = [{"n": n} for n in range(jobs)]
            if case.keys == "none":
                # The columns every version has, so the baseline's schema takes it too.
                await conn.execute(
                    "INSERT INTO jobs (id, user_id, type, input_payload) "
                    "SELECT id, 'bench', 'ECHO', payload "
                    "FROM unnest(%s::uuid[], %s::jsonb[]) AS batch(id, payload)",
                    ([uuid7() for _ in payloads], [orjson.dumps(p).decode() for p in payloads]),
                )
            else:
                keys: Sequence[str | None] = (
                    [f"conversation:{n}" for n in range(jobs)]
                    if case.keys == "each"
                    else [f"conversation:{n % (jobs // 10)}" for n in range(jobs)]
                )
                await queue.enqueue_many(
                    conn, user_id="bench", type="ECHO", payloads=payloads, concurrency_keys=keys
                )
            cursor = await conn.execute("SELECT clock_timestamp()")
            committed_at = (await cursor.fetchone() or (None,))[0]
        await wait_until(
            f"SELECT count(*) = {jobs} FROM jobs WHERE status = 'COMPLETED'", url, timeout=900
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - %s), max(attempts) FROM jobs",
                (committed_at,),
            )
            span, max_attempts = await cursor.fetchone()  # type: ignore[misc]
        assert max_attempts == 1, "a no-op job was attempted twice"
        return jobs / float(span)
    finally:
        stop_processes(workers)


# ---------------------------------------------------------------- one claim statement


CLAIM_ROUNDS = 100
CLAIM_SIZES = (16, 256)


def baseline_claim_sql(python: str) -> str:
    """The baseline checkout's own claim statement."""
    found = subprocess.run(
        [python, "-c", "from easyclaw.core.queries import query; print(query('claim_jobs'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout


async def claim_statement_times(
    url: str, baseline_sql: str | None
) -> dict[tuple[str, int], list[float]]:
    """Milliseconds of one claim (of 16 and of 256) from 20,000 PENDING jobs of one
    user, the statements alternating on one autocommit connection, as a worker
    runs them (prepared after 5 executions; the server keeps a generic plan or
    plans each time, as it decides). The claimed jobs are put back unmeasured."""
    reset(url)
    common = {"types": ["ECHO"], "worker_id": "bench", "lease_seconds": 30.0}
    statements: dict[str, tuple[str, dict[str, object]]] = {
        "claim_jobs_fair (fair share on)": (
            query("claim_jobs_fair"),
            {**common, "cursor": "", "user_max_running": 0},
        ),
        "claim_jobs (fair share off)": (query("claim_jobs"), common),
    }
    if baseline_sql is not None:
        statements = {"claim_jobs before scheduling": (baseline_sql, common), **statements}
    times: dict[tuple[str, int], list[float]] = {
        (name, size): [] for size in CLAIM_SIZES for name in statements
    }
    put_back = (
        "UPDATE jobs SET status = 'PENDING', worker_id = NULL, attempts = 0, locked_at = NULL,"
        " lease_expires_at = NULL, started_at = NULL WHERE status = 'RUNNING'"
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await queue.ensure_user(conn, "bench")
        await queue.enqueue_many(
            conn, user_id="bench", type="ECHO", payloads=[{"n": n} for n in range(20_000)]
        )
        await conn.execute("VACUUM ANALYZE jobs")
        for _ in range(CLAIM_ROUNDS):
            for (name, size), values in times.items():
                sql, params = statements[name]
                started = time.perf_counter()
                cursor = await conn.execute(sql.encode(), {**params, "limit": size})
                rows = await cursor.fetchall()
                values.append((time.perf_counter() - started) * 1000)
                assert len(rows) == size
                await conn.execute(put_back)
    return times


def claim_table(times: dict[tuple[str, int], list[float]]) -> str:
    rows = [
        [
            f"{name}, {size}",
            f"{median(values[10:]):.2f} ms",
            f"{percentile(values[10:], 0.9):.2f} ms",
        ]
        for (name, size), values in times.items()
    ]
    return markdown_table(["claim of N jobs (20,000 pending)", "median", "p90"], rows)


def baseline_database(url: str, python: str) -> str:
    """A database of its own, migrated by the baseline checkout's own migrations."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS easyclaw_baseline WITH (FORCE)")
        conn.execute("CREATE DATABASE easyclaw_baseline")
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = "easyclaw_baseline"
    baseline_url = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    subprocess.run(
        [python, "-m", "easyclaw.cli.main", "migrate"],
        env=easyclaw_env(baseline_url),
        check=True,
        capture_output=True,
    )
    with psycopg.connect(baseline_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id) VALUES ('bench') ON CONFLICT DO NOTHING")
    return baseline_url


# ---------------------------------------------------------------- report


def fairness_table(results: list[Fairness]) -> str:
    rows = [
        [
            "on" if result.fair_share else "off (global priority order)",
            f"{result.b_wait_p50:.3f} s",
            f"{result.b_wait_p99:.3f} s",
            f"{result.b_done:.3f} s",
            f"{result.a_done_when_b_done:,} of {A_JOBS:,}",
        ]
        for result in results
    ]
    return markdown_table(
        [
            "fair share",
            "B's wait p50",
            "B's wait p99",
            "B's last job done after",
            "A's jobs done by then",
        ],
        rows,
    )


def drain_table(results: dict[DrainCase, list[float]]) -> str:
    rows = [
        [case.label, f"{median(rates):,.0f} jobs/s", ", ".join(f"{rate:,.0f}" for rate in rates)]
        for case, rates in results.items()
    ]
    return markdown_table(["drain of the ECHO jobs, 2 workers", "median", "runs"], rows)


def main(args: argparse.Namespace) -> None:
    url, server = database()
    try:
        asyncio.run(measure(url, args))
    finally:
        if server is not None:
            server.stop()


async def measure(url: str, args: argparse.Namespace) -> None:
    baseline_url = None
    if args.baseline_python:
        baseline_url = baseline_database(url, args.baseline_python)
    fairness = [await b_behind_a(url, fair_share=on) for on in (True, False)]
    print(fairness_table(fairness))
    claims = await claim_statement_times(
        url, baseline_claim_sql(args.baseline_python) if args.baseline_python else None
    )
    print(claim_table(claims))
    cases = [
        DrainCase("no keys, fair share on (default)", "none"),
        DrainCase("no keys, fair share off", "none", fair_share=False),
        DrainCase(f"a key per job ({args.jobs:,} one-message conversations)", "each"),
        DrainCase(
            f"{args.jobs // 10:,} keys x 10 jobs (conversations, one job at a time)", "chains"
        ),
    ]
    if baseline_url:
        cases.insert(0, DrainCase(f"no keys, {args.baseline_label}", "none", baseline=True))
    drains: dict[DrainCase, list[float]] = {case: [] for case in cases}
    for _ in range(args.runs):  # alternate, so drift on a shared machine hits all alike
        for case in cases:
            target = baseline_url if case.baseline else url
            python = args.baseline_python if case.baseline else sys.executable
            assert target is not None
            drains[case].append(await drain_once(target, case, args.jobs, python))
            print(f"{case.label}: {drains[case][-1]:,.0f} jobs/s", flush=True)
    print(drain_table(drains))
    write_report(url, fairness, claims, drains, args)


def write_report(
    url: str,
    fairness: list[Fairness],
    claims: dict[tuple[str, int], list[float]],
    drains: dict[DrainCase, list[float]],
    args: argparse.Namespace,
) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = f"""## Fairness (`make bench-fairness` → `bench/fairness.py`, {stamp})

Machine: {machine()}. PostgreSQL {server_version(url)} (embedded, default
settings, fsync on), Python {python_version()}, client and server on the same
machine (shared with other work while it ran).

**B behind A.** 2 worker processes x 16 slots; user A submits {A_JOBS:,} jobs
of {JOB_SECONDS * 1000:.0f} ms, and once they fill the workers user B submits
{B_JOBS}. B's wait is submission to start.

{fairness_table(fairness)}

With fair share each claim splits its slots between A and B, so B gets half
of the slots that free up (640 per second here): B's 50 jobs are started
within about 50 / 320 s plus a claim, and done one job later. Without it B
waits for all of A's jobs.

**One claim statement**, {CLAIM_ROUNDS} rounds alternating on one autocommit
connection, as a worker runs it (psycopg prepares it after 5 executions; the
first 10 of each are left out): what fair share adds to the claim itself,
without the noise of worker processes on a shared machine. A worker claims as
many jobs as it has free slots, often far fewer than its batch size.

{claim_table(claims)}

**Drain** of {args.jobs:,} ECHO jobs ({args.runs} runs each, alternating;
concurrency and claim batch 256, `EASYCLAW_LOG_LEVEL=WARNING`).

{drain_table(drains)}

What it shows: prepared, as workers run it, the fair-share claim (a loose
index scan over the users, their shares, each one's jobs) costs what the claim
cost before scheduling, within this machine's spread; unprepared it plans for
2-3 ms, which is what a test that rolls its claims back would measure (psycopg
forgets prepared statements on rollback). The drain with fair share on stays
within a few percent of fair share off. Keys cost one index range per keyed
job the claim considers; jobs whose key holds them back are skipped. The
baseline ("before scheduling") runs that commit's own code and schema, so the
comparison also includes what else changed since then.
"""
    write_section("bench/fairness.py", body)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--runs", type=int, default=3, help="drain runs per case")
    parser.add_argument(
        "--baseline-python",
        help="python of another checkout's venv (e.g. main before scheduling) to drain with too",
    )
    parser.add_argument(
        "--baseline-label", default="before scheduling", help="its name in the table"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
