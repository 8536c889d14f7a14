"""A tiny HTTP endpoint for Kubernetes probes and Prometheus: /healthz, /readyz, /metrics.

A worker has no web framework; the core's ProbeServer serves these three
fixed paths on the event loop that runs the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from easyclaw.core.probe_server import ProbeServer

READY_IF_DB_SEEN_WITHIN_SECONDS = 60.0


class HealthServer(ProbeServer):
    def __init__(self, host: str, port: int, last_db_contact: Callable[[], float]) -> None:
        super().__init__(host, port, self._answer)
        self._last_db_contact = last_db_contact

    def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            age = time.monotonic() - self._last_db_contact()
            if age <= READY_IF_DB_SEEN_WITHIN_SECONDS:
                return "200 OK", "application/json", b'{"status":"ready"}'
            return (
                "503 Service Unavailable",
                "application/json",
                b'{"status":"database unreachable"}',
            )
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return "404 Not Found", "application/json", b'{"error":"NOT_FOUND"}'
