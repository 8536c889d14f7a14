"""The whole system's settings: every concern of every process, for
``easyclaw up`` (which runs them all) and for tests that start any of them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from easyclaw.api.settings import ApiProcessSettings
from easyclaw.core.settings import SettingsBase
from easyclaw.metrics_mirror.settings import MirrorProcessSettings
from easyclaw.operator.settings import OperatorProcessSettings
from easyclaw.worker.settings import WorkerProcessSettings


class LocalRunSettings(SettingsBase):
    """``easyclaw up``: where the embedded PostgreSQL lives and how many workers run."""

    local_data_dir: Path = Field(
        Path(".easyclaw"), description="embedded PostgreSQL data lives here"
    )
    local_workers: int = Field(2, ge=0, le=64, description="worker processes `easyclaw up` starts")


class Settings(
    ApiProcessSettings,
    WorkerProcessSettings,
    OperatorProcessSettings,
    MirrorProcessSettings,
    LocalRunSettings,
):
    """Every concern of every process."""
