"""The operator process's settings: its own concern plus the engine's and the application's."""

from __future__ import annotations

from pydantic import Field

from easyclaw.agents.settings import AgentSettings
from easyclaw.core.settings import CsvList, SettingsBase


class OperatorSettings(SettingsBase):
    """Which namespaces the operator watches, and how it reports."""

    operator_namespaces: CsvList = Field(
        default_factory=list,
        description="namespaces whose EasyClawJobs the operator manages; required to run it",
    )
    operator_health_port: int = Field(
        8080, ge=0, le=65535, description="port of the operator's /healthz; 0 disables"
    )
    operator_resync_seconds: float = Field(
        10.0, gt=0, description="re-read each unfinished job this often even without a NOTIFY"
    )
    operator_db_retry_initial_seconds: float = Field(
        1.0, gt=0, description="first wait of a handler that found the database unreachable"
    )
    operator_db_retry_max_seconds: float = Field(
        60.0, gt=0, description="longest wait between retries; each retry doubles the last"
    )
    operator_result_max_bytes: int = Field(
        4096, ge=64, le=262_144, description="larger results and errors are truncated in status"
    )


class OperatorProcessSettings(AgentSettings, OperatorSettings):
    """What ``easyclaw operator`` reads (it submits jobs the way the API does)."""
