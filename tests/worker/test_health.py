"""The worker's probe and metrics endpoint: /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from easyclaw.core.models import JobStatus
from easyclaw.worker.health import READY_IF_DB_SEEN_WITHIN_SECONDS, HealthServer
from tests.support.ports import free_port
from tests.support.processes import WorkerProcesses
from tests.support.waiting import wait_for
from tests.worker.helpers import Conn, enqueue, wait_status


@pytest.mark.slow
async def test_worker_process_serves_probes_and_metrics(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    port = free_port()
    worker_processes.start(
        1, EASYCLAW_WORKER_HEALTH_PORT=str(port), EASYCLAW_WORKER_HEALTH_HOST="127.0.0.1"
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

        async def healthz() -> httpx.Response | None:
            try:
                return await http.get("/healthz")
            except httpx.TransportError:
                return None  # not listening yet

        live = await wait_for(healthz, timeout=30, interval=0.1)
        assert live.status_code == 200
        assert live.json() == {"status": "ok"}

        job = await enqueue(conn, "ECHO", {"probe": True})
        await wait_status(conn, job.id, JobStatus.COMPLETED)

        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}

        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
        }
        finished = (
            "easyclaw_worker_jobs_finished_total",
            (("status", "COMPLETED"), ("type", "ECHO")),
        )
        assert samples[finished] == 1.0
        assert samples[("easyclaw_worker_jobs_claimed_total", (("type", "ECHO"),))] == 1.0
        assert samples[("easyclaw_worker_jobs_held", ())] == 0.0

        missing = await http.get("/nothing-here")
        assert missing.status_code == 404


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[HealthServer, list[float]]]:
    """A health server whose "last database contact" the test sets."""
    last_contact = [time.monotonic()]
    server = HealthServer("127.0.0.1", 0, lambda: last_contact[0])
    await server.start()
    try:
        yield server, last_contact
    finally:
        await server.close()


async def test_readyz_fails_when_the_database_has_not_been_reached_for_a_minute(
    health_server: tuple[HealthServer, list[float]],
) -> None:
    server, last_contact = health_server
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as http:
        assert (await http.get("/readyz")).status_code == 200
        last_contact[0] = time.monotonic() - READY_IF_DB_SEEN_WITHIN_SECONDS - 1
        unready = await http.get("/readyz")
        assert unready.status_code == 503
        assert unready.json() == {"status": "database unreachable"}
        # Liveness does not depend on the database: restarting would not bring it back.
        assert (await http.get("/healthz")).status_code == 200
