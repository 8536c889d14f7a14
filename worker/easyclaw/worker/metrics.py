"""Prometheus metrics of a worker process, served by the health endpoint."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_CLAIMED = Counter("easyclaw_worker_jobs_claimed_total", "Attempts started", ["type"])
JOBS_FINISHED = Counter(
    "easyclaw_worker_jobs_finished_total",
    "Attempts finished, by the status the database accepted (LEASE_LOST if none)",
    ["type", "status"],
)
JOB_DURATION = Histogram(
    "easyclaw_worker_job_duration_seconds",
    "Wall time of an attempt's handler",
    ["type"],
    buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
JOBS_HELD = Gauge("easyclaw_worker_jobs_held", "Leases this worker holds right now")
