"""The rendered ScaledObject, driving real workers against the live database.

The test reads the query, target, bounds and behavior from ``helm template``,
asks the database what KEDA would ask it every polling interval, computes
what the HPA would do (tests/charts/hpa.py) and starts or SIGTERMs real
``easyclaw worker`` processes to match, removing the least busy worker first
as the pod-deletion-cost annotation makes the ReplicaSet do. Time is
compressed by COMPRESSION so the HPA's minutes become seconds.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from easyclaw.worker.pod_deletion_cost import cost_of
from tests.charts.hpa import Autoscaler
from tests.charts.rendering import render
from tests.support.processes import WorkerProcesses

pytestmark = pytest.mark.slow

COMPRESSION = 60.0
BURST = 200
JOB_SECONDS = 0.4
WORKER_CONCURRENCY = 4
# Small enough for real processes on a 2-core machine; the rest is the chart's.
SCALING = ("worker.autoscaling.targetQueryValue=50", "worker.autoscaling.maxReplicaCount=6")


@dataclass
class Cluster:
    """The worker Deployment: running pods, and pods terminating after SIGTERM."""

    workers: WorkerProcesses
    db: psycopg.Connection[Any]
    env: dict[str, str] = field(default_factory=dict)
    """More environment for every worker (the chart's worker settings)."""
    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    terminating: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    @property
    def replicas(self) -> int:
        return len(self.running)

    def scale_to(self, count: int) -> None:
        while self.replicas < count:
            name = f"test-worker-{len(self.workers.processes)}"
            # DEBUG: the per-job job.completed lines the test counts below.
            (process,) = self.workers.start(
                1,
                EASYCLAW_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
                EASYCLAW_LOG_LEVEL="DEBUG",
                **self.env,
            )
            self.running.append((name, process))
            self.started += 1
        while self.replicas > count:
            # The ReplicaSet deletes the lowest deletion cost first (idle before busy),
            # then the newest pod.
            held = self.held_jobs()
            name, process = min(
                reversed(self.running), key=lambda item: cost_of(held.get(item[0], 0))
            )
            self.running.remove((name, process))
            process.terminate()
            self.terminating.append(process)

    def held_jobs(self) -> dict[str, int]:
        """Jobs each worker holds, from which its pod-deletion-cost annotation follows."""
        rows = self.db.execute(
            b"SELECT split_part(worker_id, '.', 1), count(*) FROM jobs"
            b" WHERE status = 'RUNNING' GROUP BY 1"
        ).fetchall()
        return {name: count for name, count in rows}

    def reap(self) -> None:
        for process in list(self.terminating):
            if process.poll() is not None:
                assert process.returncode == 0, "a worker did not stop cleanly on SIGTERM"
                self.terminating.remove(process)


def query_value(db: psycopg.Connection[Any], query: str) -> int:
    row = db.execute(query.encode()).fetchone()
    assert row is not None
    return int(row[0])


def submit_burst(db: psycopg.Connection[Any], count: int) -> None:
    db.execute(b"INSERT INTO users (id) VALUES ('burst') ON CONFLICT DO NOTHING")
    db.execute(
        b"INSERT INTO jobs (user_id, type, input_payload)"
        b" SELECT 'burst', 'SLEEP', %s::jsonb FROM generate_series(1, %s)",
        (json.dumps({"seconds": JOB_SECONDS}), count),
    )


def simulate(
    autoscaler: Autoscaler,
    cluster: Cluster,
    *,
    until: Any,
    timeout: float,
    start: float | None = None,
) -> list[tuple[float, int, int]]:
    """Poll, scale, repeat until ``until(metric, replicas)``; the (t, metric, replicas) timeline.

    With ``start`` (a monotonic time in the past) the first poll waits out the
    polling interval begun then, and t counts from it.
    """
    timeline: list[tuple[float, int, int]] = []
    if start is None:
        start = time.monotonic()
    else:
        time.sleep(max(0.0, start + autoscaler.polling_interval - time.monotonic()))
    while True:
        now = time.monotonic() - start
        metric = query_value(cluster.db, autoscaler.query)
        cluster.scale_to(autoscaler.desired(now, metric, cluster.replicas))
        cluster.reap()
        if not timeline or timeline[-1][1:] != (metric, cluster.replicas):
            timeline.append((round(now, 2), metric, cluster.replicas))
        if until(metric, cluster.replicas):
            return timeline
        assert now < timeout, f"no steady state after {timeout} s: {timeline}"
        time.sleep(autoscaler.polling_interval)


def print_timeline(label: str, timeline: list[tuple[float, int, int]]) -> None:
    print(f"\n{label} (time compressed {COMPRESSION:g}x: t is seconds of test time)")
    print("   t(s)  query  replicas")
    for stamp, metric, replicas in timeline:
        print(f"{stamp:7.2f} {metric:6d} {replicas:9d}")


@pytest.mark.parametrize("value_set", ["eks-fargate", "scale-to-zero"])
def test_burst_scales_out_then_back_to_the_minimum(
    value_set: str, database_url: str, worker_processes: WorkerProcesses
) -> None:
    scaled_object = render(value_set, *SCALING).get("ScaledObject", "worker")
    autoscaler = Autoscaler.from_scaled_object(scaled_object, COMPRESSION)
    expected_peak = min(autoscaler.max_replicas, math.ceil(BURST / autoscaler.target))
    with psycopg.connect(database_url, autocommit=True) as db:
        cluster = Cluster(workers=worker_processes, db=db)
        idle = simulate(autoscaler, cluster, until=lambda m, r: True, timeout=5)
        assert cluster.replicas == autoscaler.min_replicas

        # The worst case: the burst lands just after KEDA's poll.
        last_poll = time.monotonic()
        submit_burst(db, BURST)
        peak = 0

        def drained(metric: int, replicas: int) -> bool:
            nonlocal peak
            peak = max(peak, replicas)
            return metric == 0 and replicas == autoscaler.min_replicas and not cluster.terminating

        timeline = simulate(autoscaler, cluster, until=drained, timeout=90, start=last_poll)
        print_timeline(f"{value_set}: {BURST} jobs of {JOB_SECONDS} s", idle + timeline)
        first_new_pod = next(t for t, _, replicas in timeline if replicas > idle[-1][2])
        print(
            f"burst to first new pod: {first_new_pod * COMPRESSION:.1f} s of cluster time"
            f" (polling interval {autoscaler.polling_interval * COMPRESSION:g} s;"
            " add the HPA's sync period and the pod's start)"
        )

        statuses = dict(db.execute(b"SELECT status, count(*) FROM jobs GROUP BY 1").fetchall())
        attempts = db.execute(b"SELECT max(attempts) FROM jobs").fetchone()
    assert peak == expected_peak
    # No stabilization window: the first poll after the burst asks for the pods.
    assert first_new_pod <= autoscaler.polling_interval * 1.5, first_new_pod
    assert statuses == {"COMPLETED": BURST}, "a job was lost or left behind"
    assert attempts == (1,), "a job was claimed twice"
    worker_processes.stop_all()
    completions = Counter(
        line["job_id"]
        for line in map(json.loads, filter(None, worker_processes.logs().splitlines()))
        if line.get("event") == "job.completed"
    )
    assert len(completions) == BURST
    assert set(completions.values()) == {1}, "a job ran to completion twice"
    assert '"job.released"' not in worker_processes.logs(), "scale-in interrupted a busy worker"


BLOCKED = 200


@pytest.mark.parametrize("blocked_by", ["one-conversation", "rate-limit"])
def test_blocked_work_does_not_scale_the_fleet_out(
    blocked_by: str, database_url: str, worker_processes: WorkerProcesses
) -> None:
    """200 jobs that cannot start now (the messages of one conversation, which run
    one at a time; or a job type limited to 1 start per second) ask for no more
    workers than the one or two that can run: the fleet stays at its minimum.
    Counting every ready job, as the query once did, asked for 200 / 50 = 4."""
    scaled_object = render("eks-fargate", *SCALING).get("ScaledObject", "worker")
    autoscaler = Autoscaler.from_scaled_object(scaled_object, COMPRESSION)
    env = {"EASYCLAW_RATE_LIMITS": "type:SLEEP=1/s"} if blocked_by == "rate-limit" else {}
    with psycopg.connect(database_url, autocommit=True) as db:
        cluster = Cluster(workers=worker_processes, db=db, env=env)
        simulate(autoscaler, cluster, until=lambda m, r: True, timeout=5)
        deadline = time.monotonic() + 30
        while env and not db.execute(b"SELECT count(*) FROM rate_limit_types").fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the worker did not write the rate limit"
            time.sleep(0.05)
        db.execute(b"INSERT INTO users (id) VALUES ('chatty')")
        key = "'conversation:one'" if blocked_by == "one-conversation" else "NULL"
        db.execute(
            b"INSERT INTO jobs (user_id, type, input_payload, concurrency_key, concurrency_limit)"
            b" SELECT 'chatty', 'SLEEP', %s::jsonb, "
            + key.encode()
            + b", "
            + (b"1" if key != "NULL" else b"NULL")
            + b" FROM generate_series(1, %s)",
            (json.dumps({"seconds": JOB_SECONDS}), BLOCKED),
        )
        polls = 0

        def watched(metric: int, replicas: int) -> bool:
            nonlocal polls
            polls += 1
            return polls > 8

        timeline = simulate(autoscaler, cluster, until=watched, timeout=60)
        print_timeline(f"{BLOCKED} jobs blocked by {blocked_by}", timeline)
        started = db.execute(b"SELECT count(*) FROM jobs WHERE started_at IS NOT NULL").fetchone()
    assert max(metric for _, metric, _ in timeline) <= 2, timeline
    assert max(replicas for *_, replicas in timeline) == autoscaler.min_replicas, timeline
    assert started is not None
    assert started[0] >= 1, "the blocked jobs did not run at all"
