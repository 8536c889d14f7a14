"""Issue 13's drain goals, each a ratio measured in one run: EasyClaw against
PgQueuer, both at their defaults, and both tuned (EasyClaw concurrency and
claim batch 256, PgQueuer ``--batch-size 256``).

Run with ``make bench-goals`` (or ``python -m bench.drain_goals``). The four
configurations take turns (A B C D, A B C D, ...) so that a change in the
machine's load during the run falls on all of them alike; each drain is
bench/compare.py's (N no-op jobs visible at one instant, 2 idle worker
processes, jobs/s until the queue reports all done, every completion
committed). Then pickup latency at the defaults, the same way as
bench/compare.py. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    database,
    machine,
    markdown_table,
    median,
    percentile,
    python_version,
    server_version,
    write_section,
)
from bench.compare import drain_once, pickup_latency
from bench.peers.base import Peer
from bench.peers.easyclaw_peer import EasyClaw
from bench.peers.pgqueuer_peer import PgQueuerPeer

# (setting, EasyClaw's configuration, PgQueuer's, goal as a ratio)
GOALS = [
    ("every setting at its default", "defaults", "defaults", 2.0),
    ("tuned: EasyClaw 256 / 256, PgQueuer `--batch-size 256`", "tuned", "batch 256", 1.3),
]


def configurations(url: str, work_dir: Path, processes: int) -> dict[str, Peer]:
    common = {"admin_url": url, "work_dir": work_dir, "processes": processes}
    return {
        "easyclaw defaults": EasyClaw(**common, label="defaults", concurrency=None, batch=None),
        "pgqueuer defaults": PgQueuerPeer(**common, label="defaults", batch=10),
        "easyclaw tuned": EasyClaw(**common, label="tuned", concurrency=256, batch=256),
        "pgqueuer batch 256": PgQueuerPeer(**common, label="batch 256", batch=256),
    }


async def measure(
    peers: dict[str, Peer], args: argparse.Namespace, log_dir: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    for peer in peers.values():
        await peer.setup()
    rates: dict[str, list[float]] = {name: [] for name in peers}
    latencies: dict[str, list[float]] = {}
    try:
        for run in range(args.runs):
            for name, peer in peers.items():
                rate = (await drain_once(peer, args.jobs, log_dir)).rate
                rates[name].append(rate)
                print(f"run {run + 1}: {peer.name}: {rate:,.0f} jobs/s", flush=True)
        for name in ("easyclaw defaults", "pgqueuer defaults"):
            latencies[name] = await pickup_latency(peers[name], args.latency_samples, log_dir)
            print(
                f"{peers[name].name}: pickup p50 {percentile(latencies[name], 0.5):.2f} ms, "
                f"p99 {percentile(latencies[name], 0.99):.2f} ms",
                flush=True,
            )
    finally:
        for peer in peers.values():
            await peer.close()
    return rates, latencies


def report(
    peers: dict[str, Peer],
    rates: dict[str, list[float]],
    latencies: dict[str, list[float]],
    args: argparse.Namespace,
    pg: str,
    minutes: float,
) -> str:
    def drain(name: str) -> str:
        runs = ", ".join(f"{rate:,.0f}" for rate in rates[name])
        return f"{median(rates[name]):,.0f} jobs/s ({runs})"

    rows = []
    for setting, ours, theirs, goal in GOALS:
        ratio = median(rates[f"easyclaw {ours}"]) / median(rates[f"pgqueuer {theirs}"])
        verdict = "met" if ratio >= goal else "**not met**"
        rows.append(
            [
                setting,
                drain(f"easyclaw {ours}"),
                drain(f"pgqueuer {theirs}"),
                f"**{ratio:.2f}x**",
                f"≥ {goal}x: {verdict}",
            ]
        )
    pickup = [
        [
            peers[name].name,
            f"{percentile(values, 0.5):.1f}",
            f"{percentile(values, 0.95):.1f}",
            f"{percentile(values, 0.99):.1f}",
        ]
        for name, values in latencies.items()
    ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = "\n".join(f"- **{peer.name}**: {peer.settings()}" for peer in peers.values())
    return (
        f"## Drain goals (`make bench-goals` → `bench/drain_goals.py`, {stamp})\n\n"
        f"Machine: {machine()}; PostgreSQL {pg} (embedded, default settings, fsync on, "
        f"unless DATABASE_URL was set), one database per configuration; Python "
        f"{python_version()}. {args.jobs:,} no-op jobs per drain, {args.processes} worker "
        f"processes, {args.runs} rounds of the four configurations in turn, medians; "
        f"pickup over {args.latency_samples} jobs. The run took {minutes:.1f} minutes.\n\n"
        + markdown_table(["setting", "EasyClaw", "PgQueuer", "ratio", "goal"], rows)
        + "\n\nPickup latency at the defaults (ms, submit to handler start):\n\n"
        + markdown_table(["system", "p50", "p95", "p99"], pickup)
        + "\n\nHow each configuration was run:\n\n"
        + settings
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args()
    url, server = database(reset=False)
    work_dir = Path(tempfile.mkdtemp(prefix="easyclaw-goals-"))
    started = time.monotonic()
    try:
        peers = configurations(url, work_dir, args.processes)
        rates, latencies = asyncio.run(measure(peers, args, work_dir / "logs"))
        pg = server_version(url)
    finally:
        if server is not None:
            server.stop()
    body = report(peers, rates, latencies, args, pg, (time.monotonic() - started) / 60)
    print(body)
    if not args.no_report:
        write_section("bench/drain_goals.py", body)


if __name__ == "__main__":
    main()
