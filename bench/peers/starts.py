"""Pickup-latency probe shared by every benchmarked system's no-op handler.

A latency sample's payload carries ``t0`` (the submitter's wall clock just
before it enqueued) and ``sample``; the handler, first thing, appends
``sample milliseconds`` to a file of its own process under
``$BENCH_STARTS_DIR``. Drain jobs carry no ``t0`` and write nothing, so the
handler stays a no-op for throughput runs. Every process is on one machine,
so the wall clocks agree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, TextIO

_file: TextIO | None = None


def record_start(payload: Any) -> None:
    global _file
    if not isinstance(payload, dict) or "t0" not in payload:
        return
    elapsed_ms = (time.time() - float(payload["t0"])) * 1000
    if _file is None:
        directory = Path(os.environ["BENCH_STARTS_DIR"])
        _file = (directory / f"{os.getpid()}.txt").open("a", buffering=1)
    _file.write(f"{payload['sample']} {elapsed_ms:.3f}\n")


def read_samples(directory: Path) -> dict[int, float]:
    """Every sample recorded so far: sample number → pickup latency in ms."""
    samples: dict[int, float] = {}
    for path in directory.glob("*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                samples[int(parts[0])] = float(parts[1])
    return samples
