"""Settings for tests: short leases and retries, the test job types."""

from __future__ import annotations

from typing import Any

from easyclaw.cli.settings import Settings

TEST_JOB_TYPES = "tests.support.jobtypes"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for ``database_url`` with test-friendly timings; ``overrides`` win."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "auth_mode": "header",
        "job_type_modules": [TEST_JOB_TYPES],
        "worker_lease_seconds": 5.0,
        "worker_heartbeat_interval_seconds": 1.0,
        "worker_maintenance_interval_seconds": 1.0,
        "worker_poll_interval_seconds": 5.0,
        "worker_shutdown_grace_seconds": 5.0,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "db_pool_max_size": 10,
    }
    values.update(overrides)
    return Settings(**values)
