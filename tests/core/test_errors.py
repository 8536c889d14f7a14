"""Retry-After: one reading of the header for every HTTP call a job makes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from easyclaw.core.errors import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-5", 0.0),
        ("999999", MAX_RETRY_AFTER_SECONDS),
        ("Mon, 07 Dec 2026 12:01:00 GMT", 60.0),
        ("Mon, 07 Dec 2026 11:00:00 GMT", 0.0),  # a date in the past: go now
    ],
)
def test_seconds_and_http_dates_are_read_and_bounded(header: str, seconds: float) -> None:
    assert retry_after_seconds(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "12 apples"])
def test_anything_else_leaves_the_backoff_to_the_job(header: str | None) -> None:
    assert retry_after_seconds(header, now=NOW) is None
