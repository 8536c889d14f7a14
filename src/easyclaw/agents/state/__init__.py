"""Per-user state: snapshots of a job's workspace, kept in S3 or a local directory.

A job type with ``uses_state=True`` runs in a fresh workspace directory
holding its user's latest snapshot; after it succeeds the workspace is packed
and stored as the next version (see ``workspace.py`` for the flow and the
concurrency policy). This module is the storage interface and its factory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote
from uuid import UUID

from easyclaw.core.errors import PermanentJobError, RetryableJobError

if TYPE_CHECKING:
    from easyclaw.agents.settings import StateSettings

_SAFE_KEY = re.compile(r"^[A-Za-z0-9/_.=@+%-]+$")


class StateStore(Protocol):
    """Where snapshot archives live, by key (S3 object keys, or paths under a directory)."""

    description: str
    """For logs and errors: ``s3://bucket/prefix`` or the local directory."""

    async def upload(self, key: str, source: Path) -> None:
        """Store the file ``source`` under ``key`` (replacing nothing: keys are unique)."""

    async def download(self, key: str, destination: Path) -> None:
        """Write the object ``key`` to the file ``destination``."""


class SnapshotConflictError(RetryableJobError):
    """Another job of the same user stored the version this job meant to store.

    Retryable: the next attempt starts from the newer snapshot, so no write is
    lost silently.
    """


class SnapshotMissingError(PermanentJobError):
    """A snapshot the database lists is not in the store (deleted by hand?)."""


class StateStoreUnavailableError(RetryableJobError):
    """The store could not be reached or answered with a transient error."""


def user_key_segment(user_id: str) -> str:
    """The user id as one key segment: readable for ordinary ids, never ``..`` or ``/``."""
    return quote(user_id, safe="@+-_=").replace(".", "%2E") or "%00"


def snapshot_key(prefix: str, *, user_id: str, version: int, job_id: UUID) -> str:
    """``<prefix><user>/v<version>-<job id>.tar.gz``; the job id keeps a rejected upload apart."""
    key = f"{prefix}{user_key_segment(user_id)}/v{version:010d}-{job_id}.tar.gz"
    if not _SAFE_KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe snapshot key {key!r} (check EASYCLAW_STATE_S3_PREFIX)")
    return key


def state_store_from_settings(settings: StateSettings) -> StateStore:
    """The backend ``EASYCLAW_STATE_BACKEND`` names, configured from the settings."""
    from easyclaw.agents.settings import StateBackend

    if settings.state_backend is StateBackend.S3:
        from easyclaw.agents.state.s3 import S3StateStore

        assert settings.state_s3_bucket is not None  # checked by StateSettings
        return S3StateStore(bucket=settings.state_s3_bucket)
    from easyclaw.agents.state.local import LocalStateStore

    return LocalStateStore(settings.state_local_dir)


__all__ = [
    "SnapshotConflictError",
    "SnapshotMissingError",
    "StateStore",
    "StateStoreUnavailableError",
    "snapshot_key",
    "state_store_from_settings",
    "user_key_segment",
]
