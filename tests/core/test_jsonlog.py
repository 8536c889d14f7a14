"""Repeated identical warnings and errors are written once per window, then counted."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from easyclaw.core.jsonlog import EventLogger, JsonFormatter, RepeatLimitingHandler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stream(clock: Clock) -> Iterator[io.StringIO]:
    output = io.StringIO()
    handler = RepeatLimitingHandler(output, window_seconds=10.0, clock=clock)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("easyclaw.test.repeats")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield output
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_an_identical_warning_is_written_once_per_window_then_summarised(
    stream: io.StringIO, clock: Clock
) -> None:
    log = EventLogger("easyclaw.test.repeats")
    for _ in range(1000):
        log.warning("api.db_unavailable", error="disk full")
        clock.now += 0.001
    assert [line["event"] for line in lines(stream)] == ["api.db_unavailable"]

    clock.now += 10
    log.warning("api.db_unavailable", error="disk full")
    first, summary, again = lines(stream)
    assert summary["event"] == "log.suppressed"
    assert summary["level"] == "warning"
    assert summary["suppressed_event"] == "api.db_unavailable"
    assert summary["suppressed"] == 999
    assert summary["error"] == "disk full"
    assert summary["seconds"] >= 10
    assert again == {**first, "ts": again["ts"]}  # a new window starts with a full line


def test_different_fields_levels_and_info_lines_are_not_held_back(stream: io.StringIO) -> None:
    log = EventLogger("easyclaw.test.repeats")
    for _ in range(3):
        log.warning("job.lease_lost", job_id="a")
        log.warning("job.lease_lost", job_id="b")
        log.error("job.lease_lost", job_id="a")
        log.info("worker.progress", completed=1)
    events = [(line["event"], line["level"], line.get("job_id")) for line in lines(stream)]
    assert events == [
        ("job.lease_lost", "warning", "a"),
        ("job.lease_lost", "warning", "b"),
        ("job.lease_lost", "error", "a"),
        ("worker.progress", "info", None),
        ("worker.progress", "info", None),
        ("worker.progress", "info", None),
    ]


def test_the_count_is_written_when_the_handler_closes(clock: Clock) -> None:
    output = io.StringIO()
    handler = RepeatLimitingHandler(output, window_seconds=10.0, clock=clock)
    handler.setFormatter(JsonFormatter())
    for _ in range(5):
        handler.handle(logging.makeLogRecord({"msg": "api.db_unavailable", "levelno": 30}))
    handler.close()
    assert [line["event"] for line in lines(output)] == ["api.db_unavailable", "log.suppressed"]
    assert lines(output)[1]["suppressed"] == 4


def test_a_window_of_zero_writes_every_line(clock: Clock) -> None:
    output = io.StringIO()
    handler = RepeatLimitingHandler(output, window_seconds=0, clock=clock)
    handler.setFormatter(JsonFormatter())
    for _ in range(5):
        handler.handle(logging.makeLogRecord({"msg": "api.db_unavailable", "levelno": 30}))
    assert len(lines(output)) == 5
