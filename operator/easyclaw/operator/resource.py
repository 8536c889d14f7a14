"""Names of the EasyClawJob custom resource and the phases of its status."""

from __future__ import annotations

from enum import StrEnum

from easyclaw.core.models import JobStatus

GROUP = "easyclaw.dev"
VERSION = "v1"
PLURAL = "easyclawjobs"
KIND = "EasyClawJob"

FINALIZER = f"{GROUP}/cancel-job"
"""Held while the resource exists, so that deleting it cancels an unfinished job first."""


class Phase(StrEnum):
    PENDING = "Pending"
    """Enqueued, waiting for a worker (also after a retry or a requeue)."""
    RUNNING = "Running"
    """A worker is running an attempt."""
    COMPLETED = "Completed"
    """Finished; ``status.result`` holds the (possibly truncated) result."""
    FAILED = "Failed"
    """Failed for good, or the spec was invalid; ``status.error`` says why."""
    CANCELLED = "Cancelled"
    """Cancelled before it finished."""

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_PHASES


FINISHED_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})

PHASE_OF_STATUS = {
    JobStatus.PENDING: Phase.PENDING,
    JobStatus.RUNNING: Phase.RUNNING,
    JobStatus.COMPLETED: Phase.COMPLETED,
    JobStatus.FAILED: Phase.FAILED,
    JobStatus.CANCELLED: Phase.CANCELLED,
}


def idempotency_key(uid: str) -> str:
    """The job's idempotency key: a replayed ADDED event finds the job, never makes a second."""
    return f"{GROUP}/{PLURAL}/{uid}"
