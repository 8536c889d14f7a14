"""Errors a job handler raises to say what should happen next."""

from __future__ import annotations


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


class PermanentJobError(JobError):
    """A failure that retrying cannot fix (bad input, rejected request): fail at once."""


class JobTimeoutError(RetryableJobError):
    """The attempt ran longer than the job's timeout; it counts as a failed attempt."""


class DatabaseUnavailableError(RuntimeError):
    """PostgreSQL cannot be reached right now; callers answer 503 or retry later."""
