"""Fleet scale: up to 16 worker processes on one database.

Run with ``make bench-fleet`` (or ``python -m bench.fleet``). Uses DATABASE_URL
if set, else an embedded PostgreSQL with default, durable settings (fsync on,
max_connections 200: 16 workers hold 32).

For each worker count (``--workers``, default 1, 2, 4, 8, 16) and each worker
setting (``--settings``: the worker defaults, and concurrency and claim batch
256 as in ``bench/queue.py``), it starts that many ``easyclaw worker``
processes, waits until every one is registered and LISTENing, inserts
``--jobs`` no-op ECHO jobs in one statement, and waits until none is PENDING or
RUNNING. jobs/s is from that commit to the last completion by the database
clock, median of ``--runs`` (the runs alternate, so drift on a shared machine
hits every row alike). While the jobs drain, a separate connection samples
every 20 ms:

* lock waits: ``pg_locks`` rows not granted (samples with any, most at once,
  and on what);
* what the workers' sessions wait for: ``pg_stat_activity`` wait events of the
  sessions named ``easyclaw-worker*`` that are not idle (ClientRead left out;
  no wait event counts as CPU);
* the connections the workers hold (the most seen in one sample).

It prints the table and replaces its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import psycopg

from bench.common import (
    REPO_ROOT,
    database,
    easyclaw_env,
    machine,
    markdown_table,
    median,
    python_version,
    server_version,
    start_processes,
    stop_processes,
    wait_until,
    write_section,
)
from easyclaw.core import queue
from easyclaw.core.queries import query, query_names
from easyclaw.worker.settings import WorkerSettings

WORKER = [sys.executable, "-m", "easyclaw.cli.main", "worker"]
DATA_DIR = REPO_ROOT / ".easyclaw" / "bench-fleet-postgres"
SAMPLE_SECONDS = 0.02
DRAINED = "SELECT NOT EXISTS (SELECT FROM jobs WHERE status IN ('PENDING', 'RUNNING'))"
# What each waiting lock is on, the statement that waits, and the one it waits for.
LOCK_WAITS = """
SELECT l.locktype || ' ' || l.mode
       || coalesce(' on ' || coalesce(l.relation::regclass::text, l.classid::regclass::text), ''),
       left(a.query, 300),
       (SELECT left(b.query, 300) FROM pg_stat_activity AS b
        WHERE b.pid = (pg_blocking_pids(l.pid))[1] LIMIT 1)
FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE NOT l.granted
"""
WORKER_SESSIONS = """
SELECT application_name, state, wait_event_type, wait_event
FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'easyclaw-worker%'
"""


@cache
def statement_prefixes() -> dict[str, str]:
    """The start of each named query (up to its first parameter) -> its name."""
    prefixes: dict[str, str] = {}
    for name in query_names():
        prefix = " ".join(query(name).split("%")[0].split())[:60]
        prefixes.setdefault(prefix, name)
    return prefixes


def statement_name(text: str | None) -> str:
    """The name in queries.sql of a statement as pg_stat_activity shows it, else its start."""
    text = " ".join((text or "?").split())
    for prefix, name in sorted(statement_prefixes().items(), key=lambda item: -len(item[0])):
        if prefix and text.startswith(prefix):
            return name
    return f"`{text[:40]}`"


@dataclass(frozen=True)
class Setting:
    """Concurrency and claim batch size of every worker; None leaves the worker's default."""

    concurrency: int | None = None
    batch: int | None = None

    @classmethod
    def parse(cls, text: str) -> Setting:
        if text == "default":
            return cls()
        concurrency, _, batch = text.partition("/")
        return cls(int(concurrency), int(batch or concurrency))

    @property
    def label(self) -> str:
        if self.concurrency is None:
            fields = WorkerSettings.model_fields
            defaults = (
                fields["worker_concurrency"].default,
                fields["worker_claim_batch_size"].default,
            )
            return "default ({}/{})".format(*defaults)
        return f"{self.concurrency}/{self.batch}"

    def env(self) -> dict[str, object]:
        settings: dict[str, object] = {"log_level": "WARNING"}
        if self.concurrency is not None:
            settings["worker_concurrency"] = self.concurrency
            settings["worker_claim_batch_size"] = self.batch
        return settings


@dataclass
class Sampling:
    """What the sampler saw during one drain."""

    samples: int = 0
    seconds: float = 0.0
    lock_wait_samples: int = 0
    most_waiting: int = 0
    waits_on: Counter[str] = field(default_factory=Counter)
    # per busy worker session and sample: its wait event, or "CPU" without one
    events: Counter[str] = field(default_factory=Counter)
    most_connections: Counter[str] = field(default_factory=Counter)

    def add(self, other: Sampling) -> None:
        self.samples += other.samples
        self.seconds += other.seconds
        self.lock_wait_samples += other.lock_wait_samples
        self.most_waiting = max(self.most_waiting, other.most_waiting)
        self.waits_on += other.waits_on
        self.events += other.events
        if other.most_connections.total() > self.most_connections.total():
            self.most_connections = other.most_connections


async def sample(url: str, done: asyncio.Event) -> Sampling:
    """Sample lock waits and the workers' sessions every 20 ms until ``done``."""
    seen = Sampling()
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not done.is_set():
            cursor = await conn.execute(LOCK_WAITS.encode())
            waiting = await cursor.fetchall()
            cursor = await conn.execute(WORKER_SESSIONS.encode())
            sessions = await cursor.fetchall()
            seen.samples += 1
            if waiting:
                seen.lock_wait_samples += 1
                seen.most_waiting = max(seen.most_waiting, len(waiting))
                seen.waits_on.update(
                    f"{what}: {statement_name(waits)} waits for {statement_name(holds)}"
                    for what, waits, holds in waiting
                )
            connections = Counter(str(name) for name, *_ in sessions)
            if connections.total() > seen.most_connections.total():
                seen.most_connections = connections
            seen.events.update(
                f"{kind}/{event}" if kind else "CPU"
                for _, state, kind, event in sessions
                if state != "idle" and event != "ClientRead"
            )
            await asyncio.sleep(SAMPLE_SECONDS)
    seen.seconds = time.monotonic() - started
    return seen


@dataclass
class Drain:
    rate: float
    sampling: Sampling


async def drain_once(url: str, workers: int, setting: Setting, jobs: int) -> Drain:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, workers CASCADE")
        conn.execute("VACUUM ANALYZE jobs")
    log_dir = Path(tempfile.mkdtemp(prefix="easyclaw-bench-fleet-"))
    processes = start_processes(WORKER, workers, easyclaw_env(url, **setting.env()), log_dir)
    try:
        # Registered, and listening: the insert's NOTIFY reaches every worker.
        await wait_until(
            f"SELECT (SELECT count(*) FROM workers WHERE stopped_at IS NULL) >= {workers} "
            "AND (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'easyclaw-worker-listener' "
            f"AND query LIKE 'LISTEN %') >= {workers}",
            url,
            timeout=180,
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await queue.ensure_user(conn, "bench")
            await queue.enqueue_many(
                conn, user_id="bench", type="ECHO", payloads=[{"n": n} for n in range(jobs)]
            )
            cursor = await conn.execute("SELECT clock_timestamp()")
            committed_at = (await cursor.fetchone() or (None,))[0]
            done = asyncio.Event()
            sampler = asyncio.create_task(sample(url, done))
            try:
                await wait_until(DRAINED, url, timeout=900, interval=0.05)
            finally:
                done.set()
                sampling = await sampler
            cursor = await conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - %s), max(attempts), "
                "count(*) FILTER (WHERE status = 'COMPLETED') FROM jobs",
                (committed_at,),
            )
            span, most_attempts, completed = await cursor.fetchone()  # type: ignore[misc]
        assert completed == jobs, f"{completed} of {jobs} jobs completed"
        assert most_attempts == 1, "a no-op job was attempted twice"
        return Drain(jobs / float(span), sampling)
    finally:
        stop_processes(processes)


def share(counter: Counter[str], top: int) -> str:
    total = counter.total()
    if not total:
        return "none"
    return ", ".join(f"{name} {count / total:.0%}" for name, count in counter.most_common(top))


def table(results: dict[tuple[Setting, int], list[Drain]]) -> str:
    rows = []
    for (setting, workers), drains in results.items():
        rate = median([drain.rate for drain in drains])
        single = median([drain.rate for drain in results.get((setting, 1), drains)])
        seen = Sampling()
        for drain in drains:
            seen.add(drain.sampling)
        connections = seen.most_connections
        rows.append(
            [
                f"{workers} x {setting.label}",
                f"**{rate:,.0f}**",
                ", ".join(f"{drain.rate:,.0f}" for drain in drains),
                f"{rate / single:.2f}",
                f"**{seen.lock_wait_samples}** of {seen.samples}"
                + (f" (most {seen.most_waiting} at once)" if seen.lock_wait_samples else ""),
                share(seen.events, 3),
                f"{connections.total() / workers:g} "
                f"({connections['easyclaw-worker']} + "
                f"{connections['easyclaw-worker-listener']} listening)",
            ]
        )
    return markdown_table(
        [
            "workers x concurrency/batch",
            "jobs/s (median)",
            "runs",
            "vs 1 worker",
            "samples with a lock wait",
            "busy worker sessions: top wait events",
            "connections per worker (most seen)",
        ],
        rows,
    )


def lock_waits(results: dict[tuple[Setting, int], list[Drain]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for drains in results.values():
        for drain in drains:
            found += drain.sampling.waits_on
    return found


async def measure(url: str, args: argparse.Namespace) -> dict[tuple[Setting, int], list[Drain]]:
    results: dict[tuple[Setting, int], list[Drain]] = {
        (setting, workers): [] for setting in args.settings for workers in args.workers
    }
    for run in range(args.runs):
        for setting, workers in results:
            drain = await drain_once(url, workers, setting, args.jobs)
            results[setting, workers].append(drain)
            print(
                f"run {run + 1}: {workers} x {setting.label}: {drain.rate:,.0f} jobs/s, "
                f"{drain.sampling.lock_wait_samples} of {drain.sampling.samples} samples "
                f"with a lock wait",
                flush=True,
            )
    return results


NOTIFY_LOCK = "object AccessExclusiveLock on pg_database"


def interpretation(
    args: argparse.Namespace, results: dict[tuple[Setting, int], list[Drain]]
) -> str:
    """What the numbers say, from the numbers."""
    fewest, most = min(args.workers), max(args.workers)
    lines = []
    for setting in args.settings:
        rates = {n: median([d.rate for d in results[setting, n]]) for n in args.workers}
        lowest = min(rates, key=rates.__getitem__)
        seen = Sampling()
        for drain in results[setting, most]:
            seen.add(drain.sampling)
        lines.append(
            f"- {setting.label}: {most} workers drain at **{rates[most] / rates[fewest]:.2f}x** "
            f"the rate of {fewest}; the slowest is {lowest} at "
            f"{rates[lowest] / rates[fewest]:.2f}x. With {most} workers "
            f"{seen.lock_wait_samples} of {seen.samples} samples saw a lock wait "
            f"(most waiting at once: {seen.most_waiting})."
        )
    waits = lock_waits(results)
    total = waits.total()
    if not total:
        lines.append("- No sample saw a lock wait.")
    else:
        found = "; ".join(f"{count} x {what}" for what, count in waits.most_common(5))
        lines.append(f"- Waiting locks (sampled lock rows x what): {found}.")
    notify = sum(count for what, count in waits.items() if what.startswith(NOTIFY_LOCK))
    if notify:
        lines.append(
            f"- {notify / total:.0%} of the waiting lock rows are `{NOTIFY_LOCK}`: PostgreSQL's "
            "NOTIFY lock. A transaction that sent NOTIFY takes it (cluster-wide, on "
            '"database 0") just before it commits and holds it until its commit is on disk, '
            "so such commits go one at a time, each behind the other's WAL flush. Claims and "
            "completions send one only for watched jobs (a long-poll or the operator follows "
            "them, migration 0006); inserts, cancels, releases and reaping always do. The "
            "statements named above are the ones that waited and held it."
        )
    rows = sum(count for what, count in waits.items() if what.startswith("transactionid"))
    if rows:
        lines.append(
            f"- {rows / total:.0%} are `transactionid ShareLock`: a statement waits for "
            "another transaction to end because that transaction holds a row it must "
            "update (the statements are named above)."
        )
    lines.append(
        f"- This machine has {os.cpu_count()} cores for the workers, PostgreSQL and this "
        "script: more worker processes cannot add throughput here, only contention; what a "
        "fleet needs from the database is that the rate does not fall as workers are added "
        "and that they do not wait on each other."
    )
    return "\n".join(lines)


def report(
    url: str, args: argparse.Namespace, results: dict[tuple[Setting, int], list[Drain]]
) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    drains = [drain for row in results.values() for drain in row]
    samples = sum(drain.sampling.samples for drain in drains)
    seconds = sum(drain.sampling.seconds for drain in drains)
    return f"""## Fleet scale (`make bench-fleet` → `bench/fleet.py`, {stamp})

Machine: {machine()}. PostgreSQL {server_version(url)} (embedded, default
settings, fsync on, max_connections 200), Python {python_version()}; workers,
database and this script share the machine. For each row {args.jobs:,} no-op
ECHO jobs of one user are inserted in one statement while the worker processes
wait, registered and listening; jobs/s from that commit to the last completion
by the database clock, median of {args.runs} runs (alternating).
`EASYCLAW_LOG_LEVEL=WARNING`, other settings default (fair share on). While
the jobs drain a separate connection samples every {SAMPLE_SECONDS * 1000:.0f} ms
({samples:,} samples in {seconds:.0f} s, {samples / seconds:.0f}/s): `pg_locks`
rows not granted, and the wait events of the workers' sessions that are not
idle (ClientRead left out, none is CPU; shares of those session samples).
Connections: the most `easyclaw-worker*` sessions seen in one sample, per
worker process (pooled + listening).

{table(results)}

{interpretation(args, results)}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker process counts")
    parser.add_argument(
        "--settings",
        default="default,256/256",
        help="worker settings, comma list of 'default' or CONCURRENCY/CLAIM_BATCH_SIZE",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain")
    parser.add_argument("--runs", type=int, default=2, help="drains per row (median)")
    parser.add_argument("--no-report", action="store_true", help="print only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check that it works: 2,000 jobs, workers 1,4,16, 1 run, no report",
    )
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.workers, args.runs, args.no_report = 2_000, "1,4,16", 1, True
    args.workers = sorted({int(n) for n in args.workers.split(",")})
    args.settings = [Setting.parse(text) for text in args.settings.split(",")]
    return args


def main() -> None:
    args = parse_args()
    url, server = database(data_dir=DATA_DIR)
    try:
        results = asyncio.run(measure(url, args))
        body = report(url, args, results)
    finally:
        if server is not None:
            server.stop()
    print("\n" + body)
    if not args.no_report:
        write_section("bench/fleet.py", body)


if __name__ == "__main__":
    main()
