"""One typed settings object per process, read from the environment.

Every field here is documented in the README's configuration table; the
chart's values.yaml mirrors them. Variables are prefixed with ``EASYCLAW_``
except ``DATABASE_URL``, which keeps the conventional name.
"""

from __future__ import annotations

import json
import os
import re
import socket
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MAX_CLOUDWATCH_DIMENSIONS = 30


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class StateBackend(StrEnum):
    LOCAL = "local"
    """Snapshots are files under ``EASYCLAW_STATE_LOCAL_DIR`` (``make up``)."""
    S3 = "s3"
    """Snapshots are objects in ``EASYCLAW_STATE_S3_BUCKET`` (encrypted at rest)."""


class ChatProviderName(StrEnum):
    ECHO = "echo"
    """Offline: answers with a labelled echo of the last message (no model involved)."""
    OPENAI = "openai"
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, Ollama)."""
    BEDROCK = "bedrock"
    """Amazon Bedrock's Converse API through boto3 (credentials from IRSA on EKS)."""


class ModelPrice(BaseModel):
    """What a model costs, in credits per 1,000 tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class AuthMode(StrEnum):
    HEADER = "header"
    """Trust the ``x-user-id`` header; for local runs and trusted gateways only."""
    JWT = "jwt"
    """Verify a Bearer JWT against a JWKS URL; ``sub`` is the user id."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _parse_dimensions(value: object) -> object:
    """``Cluster=prod,Environment=production`` (or a JSON object) as a dict.

    A malformed pair is an error that names the variable.
    """
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        return json.loads(value)  # also accepted: a JSON object
    dimensions: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        name, sep, dimension_value = pair.partition("=")
        if not sep or not name.strip() or not dimension_value.strip():
            raise ValueError(
                f"EASYCLAW_METRICS_DIMENSIONS: {pair!r} is not Name=Value "
                "(expected e.g. Cluster=prod-eks,Environment=production)"
            )
        dimensions[name.strip()] = dimension_value.strip()
    return dimensions


def default_worker_name() -> str:
    """The pod name on Kubernetes (downward API), else the hostname."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EASYCLAW_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- general -----------------------------------------------------------
    env: Environment = Field(Environment.DEVELOPMENT, description="development or production")
    log_level: str = Field("INFO", description="Python log level name")
    log_repeat_window_seconds: float = Field(
        10.0, ge=0, description="identical warnings/errors are written once per window; 0: all"
    )

    # --- database ----------------------------------------------------------
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "EASYCLAW_DATABASE_URL"),
        description="PostgreSQL URL; unset means `easyclaw up` starts an embedded server",
    )
    db_pool_min_size: int = Field(1, ge=0)
    db_pool_max_size: int = Field(10, ge=1)
    db_connect_timeout_seconds: float = Field(3.0, gt=0)
    db_pool_timeout_seconds: float = Field(
        3.0, gt=0, description="how long a request waits for a pooled connection before 503"
    )
    db_statement_timeout_ms: int = Field(15_000, ge=0, description="0 disables the limit")
    db_idle_in_transaction_timeout_ms: int = Field(
        60_000,
        ge=0,
        description="the server ends a session idle this long inside a transaction (a paused "
        "worker's locks are released, so its leases can be reaped); 0 disables it",
    )
    db_prepare_statements: bool = Field(
        True,
        description="server-side prepared statements; disable behind PgBouncer (transaction mode)",
    )

    # --- API -----------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of the API's /metrics, a listener of its own (the API port never "
        "serves it); 0 disables",
    )
    api_max_body_bytes: int = Field(1_048_576, ge=1)
    api_max_header_bytes: int = Field(
        65_536, ge=1024, le=16_777_216, description="request line and headers; larger is a 431"
    )
    api_header_timeout_seconds: float = Field(
        10.0, gt=0, description="time for a request's line and headers to arrive"
    )
    api_keep_alive_seconds: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this"
    )
    api_max_connections: int = Field(
        16_384, ge=1, description="open connections per API process; more get 503"
    )
    auth_mode: AuthMode = AuthMode.JWT
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["RS256"])
    jwt_leeway_seconds: float = Field(30.0, ge=0)

    # --- jobs ----------------------------------------------------------------
    job_type_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra modules whose JobType objects are registered (development); "
        "installed plug-ins use the easyclaw.job_types entry points",
    )
    job_default_max_attempts: int = Field(3, ge=1, le=100)
    job_default_timeout_seconds: float = Field(300.0, gt=0)
    retry_base_seconds: float = Field(2.0, ge=0)
    retry_max_seconds: float = Field(300.0, ge=0)
    retention_hours: float = Field(
        168.0, ge=0, description="finished jobs older than this are deleted; 0 keeps them forever"
    )
    retention_batch_size: int = Field(1000, ge=1)

    # --- worker --------------------------------------------------------------
    worker_name: str = Field(default_factory=default_worker_name)
    worker_concurrency: int = Field(16, ge=1, le=10_000)
    worker_claim_batch_size: int = Field(64, ge=1, le=10_000)
    worker_poll_interval_seconds: float = Field(5.0, gt=0)
    worker_lease_seconds: float = Field(30.0, gt=0)
    worker_heartbeat_interval_seconds: float = Field(10.0, gt=0)
    worker_shutdown_grace_seconds: float = Field(25.0, ge=0)
    worker_maintenance_interval_seconds: float = Field(10.0, gt=0)
    worker_job_types: Annotated[list[str], NoDecode] = Field(
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

    # --- per-user state (workspaces and snapshots) ---------------------------
    state_backend: StateBackend = Field(
        StateBackend.LOCAL, description="where state snapshots are kept: local or s3"
    )
    state_local_dir: Path = Field(
        Path(".easyclaw/state"), description="snapshot files of the local backend"
    )
    state_s3_bucket: str | None = Field(None, description="bucket of the s3 backend")
    state_s3_prefix: str = Field("state/", description="key prefix of every snapshot object")
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint override (moto, MinIO); unset means AWS"
    )
    workspace_dir: Path | None = Field(
        None, description="parent of the per-job workspaces; unset means the system temp dir"
    )

    # --- RESEARCH --------------------------------------------------------------
    research_allow_private_addresses: bool = Field(
        False,
        description="let RESEARCH fetch private, loopback and link-local addresses "
        "(off: a guard against server-side request forgery)",
    )
    research_max_bytes: int = Field(2_000_000, ge=1, description="largest page RESEARCH reads")
    research_timeout_seconds: float = Field(
        15.0, gt=0, description="connect and read timeout of each RESEARCH request"
    )
    research_search_provider: str | None = Field(
        None,
        description="`module:function` answering RESEARCH queries; unset refuses query jobs",
    )
    research_summarise: bool = Field(
        False, description="summarise fetched pages through the CHAT provider"
    )

    # --- operator (`easyclaw operator`) -------------------------------------
    operator_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="namespaces whose EasyClawJobs the operator manages; required to run it",
    )
    operator_health_port: int = Field(
        8080, ge=0, le=65535, description="port of the operator's /healthz; 0 disables"
    )
    operator_resync_seconds: float = Field(
        10.0, gt=0, description="re-read each unfinished job this often even without a NOTIFY"
    )
    operator_result_max_bytes: int = Field(
        4096, ge=64, le=262_144, description="larger results and errors are truncated in status"
    )

    # --- metrics mirror (CloudWatch) ----------------------------------------
    cloudwatch_namespace: str = Field(
        "EasyClaw", min_length=1, max_length=255, description="CloudWatch namespace"
    )
    cloudwatch_endpoint_url: str | None = Field(
        None, description="CloudWatch endpoint override (moto in tests); unset means AWS"
    )
    metrics_mirror_interval_seconds: float = Field(60.0, gt=0, le=3600)
    metrics_dimensions: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="dimensions on every datum, `Cluster=prod-eks,Environment=production`",
    )
    metrics_mirror_health_port: int = Field(
        8081, ge=0, le=65535, description="port of the mirror's /healthz; 0 disables"
    )
    metrics_mirror_stale_seconds: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="the leader's /healthz answers 503 when its last successful publication "
        "(or its start as leader) is older than this; unset means 5 intervals",
    )

    # --- CHAT and its model provider ----------------------------------------
    chat_provider: ChatProviderName = Field(
        ChatProviderName.ECHO, description="echo (offline), openai or bedrock"
    )
    chat_model: str | None = Field(
        None, description="model id sent to the provider; required for openai and bedrock"
    )
    chat_system_prompt: str = "You are a helpful assistant."
    chat_history_messages: int = Field(20, ge=0, le=1000)
    chat_timeout_seconds: float = Field(60.0, gt=0)
    chat_max_tokens: int = Field(1024, ge=1)
    bedrock_region: str | None = Field(
        None, description="Bedrock region; unset uses AWS_REGION / the SDK's default chain"
    )
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="base URL up to and including /v1"
    )
    openai_api_key: SecretStr | None = None
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='JSON map model id -> {"input", "output"} credits per 1k tokens; '
        '"*" prices any other model',
    )

    # --- billing -------------------------------------------------------------
    billing_enforce: bool = Field(
        False, description="refuse POST /jobs with 402 when the balance is not above zero"
    )
    free_tier_credits: Decimal = Field(
        Decimal(0), ge=0, description="credits a new user starts with (a FREE_TIER transaction)"
    )

    # --- local run (`easyclaw up`) ------------------------------------------
    local_data_dir: Path = Field(
        Path(".easyclaw"), description="embedded PostgreSQL data lives here"
    )
    local_workers: int = Field(2, ge=0, le=64, description="worker processes `easyclaw up` starts")

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in (
                "jwt_algorithms",
                "worker_job_types",
                "job_type_modules",
                "operator_namespaces",
            ):
                if key in data:
                    data[key] = _split_csv(data[key])
            if "metrics_dimensions" in data:
                data["metrics_dimensions"] = _parse_dimensions(data["metrics_dimensions"])
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.auth_mode is AuthMode.HEADER:
            raise ValueError(
                "EASYCLAW_AUTH_MODE=header trusts any caller and is refused when "
                "EASYCLAW_ENV=production; use jwt"
            )
        if self.worker_heartbeat_interval_seconds >= self.worker_lease_seconds:
            raise ValueError(
                "EASYCLAW_WORKER_HEARTBEAT_INTERVAL_SECONDS must be shorter than "
                "EASYCLAW_WORKER_LEASE_SECONDS, or every running job would lose its lease"
            )
        if len(self.metrics_dimensions) > MAX_CLOUDWATCH_DIMENSIONS:
            raise ValueError(
                f"EASYCLAW_METRICS_DIMENSIONS has {len(self.metrics_dimensions)} dimensions; "
                f"CloudWatch accepts at most {MAX_CLOUDWATCH_DIMENSIONS}"
            )
        if self.state_backend is StateBackend.S3 and not self.state_s3_bucket:
            raise ValueError("EASYCLAW_STATE_BACKEND=s3 needs EASYCLAW_STATE_S3_BUCKET")
        if self.research_search_provider is not None and not re.fullmatch(
            r"[\w.]+:\w+", self.research_search_provider
        ):
            raise ValueError(
                "EASYCLAW_RESEARCH_SEARCH_PROVIDER must look like package.module:function"
            )
        if "none" in {alg.lower() for alg in self.jwt_algorithms}:
            raise ValueError("EASYCLAW_JWT_ALGORITHMS must not contain 'none'")
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error for commands that cannot start without one."""
        if self.database_url is None:
            raise SettingsError("DATABASE_URL is not set")
        return self.database_url.get_secret_value()


class SettingsError(RuntimeError):
    """Configuration that cannot work; the message names the variable to fix."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
