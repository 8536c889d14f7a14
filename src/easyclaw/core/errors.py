"""Errors a job handler raises to say what should happen next."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class JobError(Exception):
    """Base class for errors raised deliberately by job handlers."""


class RetryableJobError(JobError):
    """A transient failure: the job is retried with exponential backoff.

    ``retry_after`` (seconds) overrides the backoff when the cause knows better,
    for example a provider's ``Retry-After`` header.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after_seconds(header: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds an HTTP ``Retry-After`` header asks to wait, within [0, 1 hour].

    Both forms are read: delta-seconds and an HTTP date. Anything else is
    None, and the job's own backoff decides.
    """
    if header is None:
        return None
    value = header.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class PermanentJobError(JobError):
    """A failure that retrying cannot fix (bad input, rejected request): fail at once."""


class JobTimeoutError(RetryableJobError):
    """The attempt ran longer than the job's timeout; it counts as a failed attempt."""


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL cannot be reached right now; callers answer 503 or retry later."""
