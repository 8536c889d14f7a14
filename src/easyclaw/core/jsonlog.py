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


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger's records, as JSON lines, to stdout (or ``stream``)."""
    handler = logging.StreamHandler(stream or sys.stdout)
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
