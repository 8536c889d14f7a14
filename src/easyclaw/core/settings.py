"""Settings, by concern, read from the environment.

Each concern (database, jobs, API, worker, operator, metrics mirror, chat,
research, state, billing) is a class of fields declared next to the code that
reads it, and each process composes the concerns it uses, so it validates
only those: a bad worker variable cannot stop the API. Variables are prefixed
``EASYCLAW_`` except ``DATABASE_URL``. Every field is documented in the
README's configuration table (a test checks the table against the model) and
mirrored in the chart's values.yaml.

This module holds what every concern shares and the engine's own concerns.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def split_csv(value: object) -> object:
    """``a, b,,c`` as ``["a", "b", "c"]``; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]
"""A list read from a comma-separated variable (``EASYCLAW_WORKER_JOB_TYPES=CHAT,ECHO``)."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def default_worker_name() -> str:
    """The pod name on Kubernetes (downward API), else the hostname."""
    return os.environ.get("POD_NAME") or socket.gethostname()


class SettingsBase(BaseSettings):
    """What every process reads; each concern extends it."""

    model_config = SettingsConfigDict(
        env_prefix="EASYCLAW_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    env: Environment = Field(Environment.DEVELOPMENT, description="development or production")
    log_level: str = Field("INFO", description="Python log level name")
    log_repeat_window_seconds: float = Field(
        10.0, ge=0, description="identical warnings/errors are written once per window; 0: all"
    )


class DatabaseSettings(SettingsBase):
    """The connection to PostgreSQL, for every process."""

    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "EASYCLAW_DATABASE_URL"),
        description="PostgreSQL URL; unset means `easyclaw up` starts an embedded server",
    )
    database_session_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL for the connections that need a session of their own "
        "(LISTEN, the migrations' and the metrics mirror's advisory locks): the server itself "
        "when DATABASE_URL points at PgBouncer in transaction mode; unset means DATABASE_URL",
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
    db_startup_options: bool = Field(
        True,
        description="send the session settings (the two timeouts above, and the workers' "
        "planner settings `enable_bitmapscan=off` and `jit=off`) as the `options` startup "
        "parameter; disable behind PgBouncer, which refuses it, and set them on the role instead",
    )

    def require_database_url(self) -> str:
        """The database URL, or a clear error for commands that cannot start without one."""
        if self.database_url is None:
            raise SettingsError("DATABASE_URL is not set")
        return self.database_url.get_secret_value()

    def require_session_database_url(self) -> str:
        """The URL for session-scoped connections (LISTEN, advisory locks, migrations)."""
        if self.database_session_url is not None:
            return self.database_session_url.get_secret_value()
        return self.require_database_url()


class JobSettings(SettingsBase):
    """Job types, retries and retention: what the queue engine itself decides."""

    job_type_modules: CsvList = Field(
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
    worker_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="a job's lease: a worker silent this long loses its jobs to the others",
    )


class EngineSettings(DatabaseSettings, JobSettings):
    """Everything the queue engine reads; each process's settings include it."""


class SettingsError(RuntimeError):
    """Configuration that cannot work; the message names the variable to fix."""
