"""The worker process's settings: its own concern plus the engine's and the application's."""

from __future__ import annotations

from pydantic import Field, model_validator

from easyclaw.agents.settings import AgentSettings
from easyclaw.core.scheduling import RateLimit, parse_rate_limits
from easyclaw.core.settings import CsvList, JobSettings, default_worker_name


class WorkerSettings(JobSettings):
    """Claiming, leases, shutdown and the worker's probes."""

    worker_name: str = Field(default_factory=default_worker_name)
    worker_concurrency: int = Field(16, ge=1, le=10_000)
    worker_claim_batch_size: int = Field(64, ge=1, le=10_000)
    worker_poll_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="fallback claim when no NOTIFY arrives (a listener that reconnects "
        "re-checks at once, so this only bounds what a lost notification can delay)",
    )
    worker_heartbeat_interval_seconds: float = Field(10.0, gt=0)
    worker_shutdown_grace_seconds: float = Field(25.0, ge=0)
    worker_maintenance_interval_seconds: float = Field(10.0, gt=0)
    worker_db_connections: int = Field(
        1,
        ge=1,
        le=100,
        description="pooled connections of a worker process (claims, completions, heartbeat, "
        "maintenance and handlers' queries share them); it opens one more to LISTEN",
    )
    fair_share: bool = Field(
        True,
        description="share workers round-robin between users with ready jobs; false takes "
        "jobs in global priority order, whoever they belong to (every worker should agree)",
    )
    user_max_running: int = Field(
        0,
        ge=0,
        le=100_000,
        description="most jobs of one user running at once, fleet-wide (users.max_running "
        "overrides it per user); 0 means no limit. Needs fair share",
    )
    rate_limits: str = Field(
        "",
        description="fleet-wide token buckets, `type:CHAT=5/s,provider:openai=60/min;burst=10,"
        "tokens:provider:openai=90000/min`; a worker writes them to the database at start",
    )
    worker_job_types: CsvList = Field(
        default_factory=list, description="job types this worker runs; empty means all registered"
    )
    worker_health_port: int = Field(
        0, ge=0, le=65535, description="port of the worker's /healthz and /metrics; 0 disables"
    )
    worker_health_host: str = "0.0.0.0"  # noqa: S104 - probes reach the pod IP
    worker_pod_deletion_cost: bool = Field(
        False,
        description="on Kubernetes, annotate the own pod with the number of held jobs "
        "(controller.kubernetes.io/pod-deletion-cost) so scale-in removes idle workers first",
    )

    @property
    def rate_limit_buckets(self) -> list[RateLimit]:
        return parse_rate_limits(self.rate_limits)

    @model_validator(mode="after")
    def _check_lease(self) -> WorkerSettings:
        if self.worker_heartbeat_interval_seconds >= self.worker_lease_seconds:
            raise ValueError(
                "EASYCLAW_WORKER_HEARTBEAT_INTERVAL_SECONDS must be shorter than "
                "EASYCLAW_WORKER_LEASE_SECONDS, or every running job would lose its lease"
            )
        try:
            parse_rate_limits(self.rate_limits)
        except ValueError as error:
            raise ValueError(f"EASYCLAW_RATE_LIMITS: {error}") from None
        if self.user_max_running and not self.fair_share:
            raise ValueError(
                "EASYCLAW_USER_MAX_RUNNING needs EASYCLAW_FAIR_SHARE=true: per-user limits are "
                "enforced by the fair-share claim"
            )
        return self


class WorkerProcessSettings(AgentSettings, WorkerSettings):
    """What ``easyclaw worker`` reads."""
