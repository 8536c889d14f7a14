"""Side-by-side benchmark: EasyClaw against PgQueuer, Procrastinate, Celery
with Redis and the original design (bench/peers/baseline.py), on this machine
and one PostgreSQL server.

Run with ``make bench-compare`` (or ``python -m bench.compare``); ``--quick``
is a reduced run that checks everything works in about a minute. Every
system gets its own database on the same embedded PostgreSQL 18 (default,
durable settings; DATABASE_URL's server if set) and is measured the same way:

* drain: N no-op jobs made visible at one instant (one statement, or one
  Redis RENAME) while 2 idle worker processes wait; jobs/s from then until the
  queue reports all done (polled every 10 ms); median of 3 runs;
* pickup latency: 200 jobs submitted one at a time to idle workers, 20-50 ms
  apart; from the submitter's clock just before the enqueue call to the
  first line of the handler (bench/peers/starts.py), p50 / p95 / p99;
* idle load: transactions per second per idle worker process (Redis
  commands for Celery), over 10 s;
* memory: peak RSS (VmHWM) of each worker process, children included;
* CPU per job during the drains: the worker processes' (children included)
  and the server's (every PostgreSQL process; Redis for Celery), from psutil.

EasyClaw and PgQueuer are each measured at their defaults and tuned
(EasyClaw concurrency and claim batch 256, PgQueuer ``--batch-size 256``), so
the issue 13 ratios come from the same run as the other systems.

It writes a table between markers in docs/benchmarks.md and a chart to
docs/benchmarks.png.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.common import (
    BENCHMARKS_MD,
    REPO_ROOT,
    database,
    machine,
    median,
    percentile,
    python_version,
    server_version,
    stop_processes,
)
from bench.peers.base import Peer
from bench.peers.baseline import Baseline
from bench.peers.celery_peer import CeleryPeer
from bench.peers.easyclaw_peer import EasyClaw
from bench.peers.pgqueuer_peer import PgQueuerPeer
from bench.peers.procrastinate_peer import ProcrastinatePeer
from bench.peers.starts import read_samples

START_MARKER = "<!-- bench/compare.py: start -->"
END_MARKER = "<!-- bench/compare.py: end -->"
CHART = REPO_ROOT / "docs" / "benchmarks.png"


@dataclass
class Result:
    peer: Peer
    skipped: str | None = None
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    idle: float = float("nan")
    peaks: list[float] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)  # µs per job, one per drain
    server_cpu: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return median(self.rates) if self.rates else float("nan")


@dataclass
class Drain:
    rate: float  # jobs/s
    peaks: list[float]  # MiB, each worker process and child
    worker_cpu: float  # µs of CPU per job, the worker processes and their children
    server_cpu: float  # µs of CPU per job, the server's processes


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def families(processes: list[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    """Each process and every child it forked (a pool)."""
    found = []
    for process in processes:
        try:
            parent = psutil.Process(process.pid)
            found += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def server_processes(names: tuple[str, ...]) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["name"])
        if (process.info["name"] or "").startswith(names)
    ]


def peak_rss_mib(processes: list[subprocess.Popen[bytes]]) -> list[float]:
    """Peak RSS of each worker process and of each child it forked (a pool)."""
    peaks = []
    for member in families(processes):
        try:
            status = Path(f"/proc/{member.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


class Workers:
    """The peer's worker processes for one measurement, stopped at the end."""

    def __init__(self, peer: Peer, log_dir: Path) -> None:
        self.peer = peer
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> list[subprocess.Popen[bytes]]:
        self.processes = self.peer.start_workers(self.log_dir)
        ready = asyncio.create_task(self.peer.wait_ready())
        try:
            while not ready.done():
                exited = [p.args for p in self.processes if p.poll() is not None]
                if exited:
                    ready.cancel()
                    raise RuntimeError(f"{self.peer.name}: a worker exited, see {self.log_dir}")
                await asyncio.wait([ready], timeout=0.1)
            ready.result()
        except BaseException:
            stop_processes(self.processes, timeout=10)
            raise
        return self.processes

    async def __aexit__(self, *_: object) -> None:
        await asyncio.to_thread(stop_processes, self.processes, 15)


async def drain_once(peer: Peer, jobs: int, log_dir: Path) -> Drain:
    await peer.reset()
    async with Workers(peer, log_dir) as processes:
        await asyncio.sleep(0.5)  # idle: start-up queries are over
        workers, servers = families(processes), server_processes(peer.server_process_names)
        await peer.enqueue_batch(jobs)
        worker_before, server_before = cpu_seconds(workers), cpu_seconds(servers)
        started = time.perf_counter()
        deadline = started + 900
        while not await peer.drained(jobs):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{peer.name}: {jobs} jobs not drained in 900 s")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        worker_used = cpu_seconds(workers) - worker_before
        server_used = cpu_seconds(servers) - server_before
        return Drain(
            rate=jobs / elapsed,
            peaks=peak_rss_mib(processes),
            worker_cpu=worker_used / jobs * 1e6,
            server_cpu=server_used / jobs * 1e6,
        )


async def pickup_latency(peer: Peer, samples: int, log_dir: Path) -> list[float]:
    await peer.reset()
    shutil.rmtree(peer.starts_dir, ignore_errors=True)
    warm_up = 5
    async with Workers(peer, log_dir):
        await asyncio.sleep(0.5)
        for sample in range(samples + warm_up):
            await asyncio.sleep(random.uniform(0.02, 0.05))  # the workers are idle again
            await peer.enqueue_sample(sample)
            deadline = time.perf_counter() + 30
            while sample not in read_samples(peer.starts_dir):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{peer.name}: sample {sample} never started")
                await asyncio.sleep(0.001)
        recorded = read_samples(peer.starts_dir)
        return [recorded[sample] for sample in range(warm_up, samples + warm_up)]


async def idle_load(peer: Peer, seconds: float, log_dir: Path) -> float:
    await peer.reset()
    async with Workers(peer, log_dir):
        await asyncio.sleep(2)  # let start-up work settle
        before = await asyncio.to_thread(peer.idle_operations)
        await asyncio.sleep(seconds)
        after = await asyncio.to_thread(peer.idle_operations)
    return max(0, after - before - peer.probe_cost) / seconds / peer.processes


async def measure(peer: Peer, args: argparse.Namespace, log_dir: Path) -> Result:
    reason = peer.unavailable()
    if reason:
        print(f"{peer.name}: skipped, {reason}", flush=True)
        return Result(peer, skipped=reason)
    await peer.setup()
    result = Result(peer)
    try:
        for run in range(args.runs):
            drain = await drain_once(peer, args.jobs, log_dir)
            result.rates.append(drain.rate)
            result.peaks += drain.peaks
            result.worker_cpu.append(drain.worker_cpu)
            result.server_cpu.append(drain.server_cpu)
            print(
                f"{peer.name}: drain run {run + 1}: {drain.rate:,.0f} jobs/s, CPU per job "
                f"{drain.worker_cpu:.0f} µs workers, {drain.server_cpu:.0f} µs server",
                flush=True,
            )
        samples = args.latency_samples
        if peer.max_latency_samples is not None:
            samples = min(samples, 4 if args.quick else peer.max_latency_samples)
        result.latencies = await pickup_latency(peer, samples, log_dir)
        print(
            f"{peer.name}: pickup p50 {percentile(result.latencies, 0.5):.2f} ms, "
            f"p99 {percentile(result.latencies, 0.99):.2f} ms",
            flush=True,
        )
        result.idle = await idle_load(peer, args.idle_seconds, log_dir)
        print(f"{peer.name}: idle {result.idle:.2f} operations/s per worker", flush=True)
    finally:
        await peer.close()
    return result


def peers(args: argparse.Namespace, admin_url: str, work_dir: Path) -> list[Peer]:
    common = {"admin_url": admin_url, "work_dir": work_dir, "processes": args.processes}
    available: dict[str, Peer] = {
        "easyclaw": EasyClaw(**common, label="defaults", concurrency=None, batch=None),
        "easyclaw-tuned": EasyClaw(
            **common,
            label=f"{args.concurrency} / {args.batch}",
            concurrency=args.concurrency,
            batch=args.batch,
        ),
        "pgqueuer": PgQueuerPeer(**common, label="defaults", batch=10),
        "pgqueuer-tuned": PgQueuerPeer(
            **common, label=f"batch {args.pgqueuer_batch}", batch=args.pgqueuer_batch
        ),
        "procrastinate": ProcrastinatePeer(**common, concurrency=args.procrastinate_concurrency),
        "celery": CeleryPeer(**common),
        "baseline": Baseline(**common),
    }
    chosen = args.systems.split(",")
    unknown = set(chosen) - set(available)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; known: {sorted(available)}")
    return [available[key] for key in chosen]


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "| system | version | drain jobs/s (median; runs) | CPU per job: workers / server "
        "| pickup p50 / p95 / p99 ms | idle queries/s per worker | peak RSS per worker process |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        peer = result.peer
        if result.skipped:
            lines.append(f"| {peer.name} | - | skipped: {result.skipped} | | | | |")
            continue
        runs = ", ".join(f"{rate:,.0f}" for rate in result.rates)
        lat = result.latencies
        count = f" ({len(lat)} jobs)" if len(lat) != args.latency_samples else ""
        lines.append(
            f"| {peer.name} | {peer.version()} | **{result.rate:,.0f}** ({runs}) "
            f"| {median(result.worker_cpu):.0f} / {median(result.server_cpu):.0f} µs "
            f"| {percentile(lat, 0.5):.1f} / {percentile(lat, 0.95):.1f} / "
            f"{percentile(lat, 0.99):.1f}{count} | {result.idle:.2f} "
            f"| {max(result.peaks):.0f} MiB |"
        )
    return "\n".join(lines)


# (EasyClaw's system key, PgQueuer's, the goal as a ratio of their drains)
RATIO_GOALS = [("easyclaw", "pgqueuer", 2.0), ("easyclaw-tuned", "pgqueuer-tuned", 1.3)]


def verdict(results: list[Result], chosen: list[str]) -> str:
    """Issue 13's ratios, each from this run, and the lowest p99 pickup."""
    measured = {key: r for key, r in zip(chosen, results, strict=True) if r.rates}
    lines = []
    for ours_key, theirs_key, goal in RATIO_GOALS:
        ours, theirs = measured.get(ours_key), measured.get(theirs_key)
        if ours is None or theirs is None:
            continue
        ratio = ours.rate / theirs.rate
        lines.append(
            f"{ours.peer.name} drains **{ratio:.2f}x** as fast as {theirs.peer.name} "
            f"(goal ≥ {goal}x: {'met' if ratio >= goal else '**not met**'})."
        )
    if measured:
        lowest = min(measured.values(), key=lambda r: percentile(r.latencies, 0.99))
        lines.append(
            f"The lowest p99 pickup latency is {lowest.peer.name}'s "
            f"({percentile(lowest.latencies, 0.99):.1f} ms)."
        )
    return " ".join(lines)


def chart(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in results if not r.skipped and r.rates]
    names = [
        r.peer.name.replace(" (original design)", " (original)")
        .replace(" (", "\n(")
        .replace(" + ", "\n+ ")
        for r in measured
    ]
    colors = ["#2a7ab0" if isinstance(r.peer, EasyClaw) else "#9aa5b1" for r in measured]
    figure, (drain_axis, latency_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    drain_axis.bar(names, [r.rate for r in measured], color=colors)
    drain_axis.set_title("Drain: no-op jobs/s, 2 worker processes (higher is better)")
    drain_axis.tick_params(axis="x", labelsize=8)
    for index, result in enumerate(measured):
        drain_axis.annotate(
            f"{result.rate:,.0f}", (index, result.rate), ha="center", va="bottom", fontsize=8
        )
    p99 = [percentile(r.latencies, 0.99) for r in measured]
    latency_axis.bar(names, p99, color=colors)
    latency_axis.set_yscale("log")
    latency_axis.set_title("Pickup latency p99, ms (log scale, lower is better)")
    latency_axis.tick_params(axis="x", labelsize=8)
    for index, value in enumerate(p99):
        latency_axis.annotate(f"{value:.1f}", (index, value), ha="center", va="bottom", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(body: str) -> None:
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{START_MARKER}\n{body.rstrip()}\n{END_MARKER}"
    pattern = re.compile(re.escape(START_MARKER) + ".*?" + re.escape(END_MARKER), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; checks it all works")
    parser.add_argument(
        "--systems",
        default="easyclaw,pgqueuer,easyclaw-tuned,pgqueuer-tuned,procrastinate,celery,baseline",
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="worker processes per system")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=256, help="EasyClaw concurrency, tuned")
    parser.add_argument("--batch", type=int, default=256, help="EasyClaw claim batch, tuned")
    parser.add_argument(
        "--pgqueuer-batch", type=int, default=256, help="pgq run --batch-size, tuned"
    )
    parser.add_argument(
        "--procrastinate-concurrency", type=int, default=16, help="procrastinate --concurrency"
    )
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.runs, args.latency_samples, args.idle_seconds = 2_000, 1, 20, 3.0

    url, server = database(reset=False)
    work_dir = Path(tempfile.mkdtemp(prefix="easyclaw-compare-"))
    log_dir = work_dir / "logs"
    started = time.monotonic()
    try:
        results = [asyncio.run(measure(peer, args, log_dir)) for peer in peers(args, url, work_dir)]
        pg = server_version(url)
    finally:
        if server is not None:
            server.stop()
    minutes = (time.monotonic() - started) / 60
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = "\n".join(
        f"- **{r.peer.name}**: {r.peer.settings()}" for r in results if not r.skipped
    )
    body = (
        f"## Side by side (`make bench-compare` → `bench/compare.py`, {stamp})\n\n"
        + ("**Quick run (`--quick`): small sizes, not a record.**\n\n" if args.quick else "")
        + f"Machine: {machine()}. PostgreSQL {pg} "
        f"({'DATABASE_URL' if server is None else 'embedded, default settings, fsync on'}), "
        f"one database per system on the same server; Python {python_version()}; "
        "clients, workers and servers share the machine.\n"
        f"Drain: {args.jobs:,} pre-enqueued no-op jobs, {args.processes} worker processes, "
        f"median of {args.runs}; CPU per job over the drains, medians (server: every "
        "PostgreSQL process, Redis for Celery). Pickup: "
        f"{args.latency_samples} jobs one at a time to idle "
        f"workers. Idle: {args.idle_seconds:g} s. The whole run took {minutes:.1f} minutes.\n\n"
        + table(results, args)
        + "\n\n"
        + verdict(results, args.systems.split(","))
        + "\n\n![drain throughput and p99 pickup latency](benchmarks.png)\n\n"
        "How each system was run:\n\n" + settings + "\n"
    )
    print("\n" + body)
    if not args.no_report:
        write_report(body)
        chart(results, CHART)
        print(f"wrote {BENCHMARKS_MD.relative_to(REPO_ROOT)} and {CHART.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
