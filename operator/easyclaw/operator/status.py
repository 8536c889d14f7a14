"""An EasyClawJob's status, computed from its job row.

The status is a pure function of the row, so the operator can compare what
it would write with what is there and patch only on a change. Timestamps
come from the row too (conditions' ``lastTransitionTime`` included), so
recomputing the status of an unchanged job gives an identical dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from easyclaw.core.models import Job
from easyclaw.operator.resource import PHASE_OF_STATUS, Phase

StatusDict = dict[str, Any]

# Every key the operator owns in .status; keys set to None are removed by the merge patch.
STATUS_KEYS = (
    "jobId",
    "phase",
    "attempts",
    "result",
    "resultTruncated",
    "error",
    "startedAt",
    "finishedAt",
    "conditions",
)


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second, as Kubernetes writes its own timestamps."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_text(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` of UTF-8, cut on a character boundary, marked with an ellipsis."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes - 3)].decode(errors="ignore") + "…"


def bounded_result(result: Any, max_bytes: int) -> tuple[Any, bool]:
    """The result as is when its JSON fits in ``max_bytes``, else its JSON text cut to fit.

    Kubernetes objects are limited (etcd's 1.5 MiB) and are read by every
    watcher, so a large result does not belong in them; the full result stays
    in the job row (``GET /jobs/{jobId}``).
    """
    if result is None:
        return None, False
    text = orjson.dumps(result).decode()
    if len(text.encode()) <= max_bytes:
        return result, False
    return truncate_text(text, max_bytes), True


def conditions_for(
    phase: Phase, *, reason: str, message: str, since: str | None
) -> list[StatusDict]:
    """``Complete`` or ``Failed`` conditions once the job finished (as batch Jobs have),
    so ``kubectl wait --for=condition=Complete ecj/NAME`` works."""
    if phase is Phase.COMPLETED:
        kind = "Complete"
    elif phase in (Phase.FAILED, Phase.CANCELLED):
        kind = "Failed"
    else:
        return []
    return [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        }
    ]


def status_from_job(job: Job, *, max_bytes: int) -> StatusDict:
    """The status that mirrors this job row."""
    phase = PHASE_OF_STATUS[job.status]
    result, truncated = bounded_result(job.result, max_bytes)
    error = truncate_text(job.error, max_bytes) if job.error else None
    finished_at = timestamp(job.finished_at) if phase.is_finished else None
    return {
        "jobId": str(job.id),
        "phase": phase.value,
        "attempts": job.attempts,
        "result": result,
        "resultTruncated": True if truncated else None,
        "error": error,
        "startedAt": timestamp(job.started_at),
        "finishedAt": finished_at,
        "conditions": conditions_for(
            phase,
            reason=phase.value,
            message=error or f"job {phase.value.lower()}",
            since=finished_at,
        )
        or None,
    }


def invalid_spec_status(message: str, *, now: datetime, max_bytes: int) -> StatusDict:
    """The status of a resource whose spec cannot become a job (nothing was enqueued)."""
    error = truncate_text(message, max_bytes)
    finished_at = timestamp(now)
    return {
        "jobId": None,
        "phase": Phase.FAILED.value,
        "attempts": 0,
        "result": None,
        "resultTruncated": None,
        "error": error,
        "startedAt": None,
        "finishedAt": finished_at,
        "conditions": conditions_for(
            Phase.FAILED, reason="InvalidSpec", message=error, since=finished_at
        ),
    }


def status_differs(current: Mapping[str, Any] | None, desired: StatusDict) -> bool:
    """Whether writing ``desired`` would change ``current`` (None means "absent")."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())
