"""JSON log lines with stable event names.

Every line is one JSON object: ``{"ts", "level", "event", "logger", ...fields}``.
``event`` is a stable dotted name (``job.completed``) that dashboards and
alerts can rely on; the free-form detail goes into the other fields.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|authorization|api_?key|credential", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
_FIELDS = "easyclaw_fields"


_HIDDEN: set[str] = set()


def hide_in_logs(*secrets: str) -> None:
    """Never log these strings (a password, also where a library quotes it oddly)."""
    _HIDDEN.update(secret for secret in secrets if secret)


def redact(value: Any) -> Any:
    """Hide passwords embedded in URLs (``postgresql://user:secret@host``) and every
    string registered with :func:`hide_in_logs`."""
    if isinstance(value, str):
        for secret in sorted(_HIDDEN, key=len, reverse=True):
            value = value.replace(secret, "***")
        return _URL_PASSWORD.sub(r"\g<scheme>***@", value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in getattr(record, _FIELDS, {}).items():
            line[key] = "***" if _SECRET_FIELD.search(key) else redact(value)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class EventLogger:
    """``log.info("job.completed", job_id=..., duration_ms=...)`` on top of stdlib logging."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields, False)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields, False)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields, False)

    def error(self, event: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info)

    def is_enabled_for(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


@dataclass(kw_only=True, slots=True)
class _Repeats:
    since: float
    record: logging.LogRecord
    suppressed: int = 0


class RepeatLimitingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes an identical warning or error once per window.

    Identical means same logger, level, event and fields. The first line of a
    kind is written; repeats within ``window_seconds`` of it are only counted,
    and once the window is over the count is written as one ``log.suppressed``
    line (with the next line logged, or when the handler closes). An outage
    that fails every request thus costs a few lines per window, not one per
    request. Info and debug lines are never held back.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        window_seconds: float,
        max_kinds: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream)
        self.window_seconds = window_seconds
        self.max_kinds = max_kinds
        self._recent: dict[tuple[str, int, str, bytes], _Repeats] = {}
        self._clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        if self.window_seconds <= 0:
            super().emit(record)
            return
        now = self._clock()
        self._write_expired(now)
        if record.levelno < logging.WARNING:
            super().emit(record)
            return
        fields = getattr(record, _FIELDS, {})
        key = (
            record.name,
            record.levelno,
            record.getMessage(),
            orjson.dumps(fields, default=str, option=orjson.OPT_SORT_KEYS),
        )
        repeats = self._recent.get(key)
        if repeats is not None:
            repeats.suppressed += 1
            return
        if len(self._recent) >= self.max_kinds:
            self._write_summary(self._recent.pop(next(iter(self._recent))), now)
        self._recent[key] = _Repeats(since=now, record=record)
        super().emit(record)

    def write_counts(self) -> None:
        """Write the counts of every window still open (a process about to stop)."""
        self.acquire()
        try:
            now = self._clock()
            for repeats in self._recent.values():
                self._write_summary(repeats, now)
            self._recent.clear()
        finally:
            self.release()

    def close(self) -> None:
        self.write_counts()
        super().close()

    def _write_expired(self, now: float) -> None:
        # Kinds are kept in the order they started, so the expired ones come first.
        while self._recent:
            key, repeats = next(iter(self._recent.items()))
            if now - repeats.since < self.window_seconds:
                break
            del self._recent[key]
            self._write_summary(repeats, now)

    def _write_summary(self, repeats: _Repeats, now: float) -> None:
        if not repeats.suppressed:
            return
        first = repeats.record
        summary = logging.LogRecord(
            first.name, first.levelno, __file__, 0, "log.suppressed", None, None
        )
        setattr(
            summary,
            _FIELDS,
            {
                **getattr(first, _FIELDS, {}),
                "suppressed_event": first.getMessage(),
                "suppressed": repeats.suppressed,
                "seconds": round(now - repeats.since, 3),
            },
        )
        super().emit(summary)


def write_repeat_counts() -> None:
    """Write the suppressed-repeat counts now; servers call it as they stop (a
    process ended by a signal does not close its log handlers)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RepeatLimitingHandler):
            handler.write_counts()


def configure_logging(
    level: str = "INFO", stream: TextIO | None = None, *, repeat_window_seconds: float = 10.0
) -> None:
    """Send every logger's records, as JSON lines, to stdout (or ``stream``); identical
    warnings and errors are written once per ``repeat_window_seconds`` (0: always)."""
    handler = RepeatLimitingHandler(stream or sys.stdout, window_seconds=repeat_window_seconds)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "botocore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # The pool warns on every failed reconnection during an outage; our own
    # worker.db_unavailable / api.db_unavailable events already say it once each.
    logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))
    logging.Formatter.converter = time.gmtime
