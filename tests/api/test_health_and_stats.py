"""Probes, Prometheus metrics, API docs and queue statistics."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest

from easyclaw.worker.runner import Worker
from tests.api.conftest import assert_error, read, submit
from tests.support.api_server import ApiServer
from tests.support.waiting import wait_for


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in the text exposition format."""
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    selector = re.escape(f"{name}{{{label_text}}}" if labels else name)
    match = re.search(rf"^{selector} (\S+)$", metrics, re.MULTILINE)
    assert match, f"no sample {name}{labels} in:\n{metrics}"
    return float(match.group(1))


async def test_probes_answer_without_credentials(api: ApiServer) -> None:
    async with api.client(user_id=None) as anonymous:
        healthz = await anonymous.get("/healthz")
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        readyz = await anonymous.get("/readyz")
        assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


async def test_metrics_report_the_queue_and_the_requests(
    client: httpx.AsyncClient, api: ApiServer
) -> None:
    for _ in range(2):
        await submit(client)
    cancelled = await submit(client)
    await client.post(f"/jobs/{cancelled}/cancel")
    await read(client, cancelled)
    await client.get(f"/nowhere-{uuid4()}")

    response = await client.get(api.metrics_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = response.text
    assert "# TYPE easyclaw_queue_jobs gauge" in metrics
    assert sample(metrics, "easyclaw_queue_jobs", status="PENDING") == 2
    assert sample(metrics, "easyclaw_queue_jobs", status="CANCELLED") == 1
    assert sample(metrics, "easyclaw_queue_jobs", status="COMPLETED") == 0
    assert sample(metrics, "easyclaw_api_database_up") == 1
    assert "# TYPE easyclaw_api_requests_total counter" in metrics
    # Requests are counted by route template, never by raw path (bounded cardinality).
    posted = sample(
        metrics, "easyclaw_api_requests_total", method="POST", route="/jobs", status="201"
    )
    assert posted >= 3
    assert (
        sample(
            metrics,
            "easyclaw_api_requests_total",
            method="GET",
            route="/jobs/{job_id}",
            status="200",
        )
        >= 1
    )
    assert str(cancelled) not in metrics
    assert "nowhere-" not in metrics
    assert 'route="unmatched"' in metrics

    # And the counter moves with each request.
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    await client.get("/healthz")
    before = sample(
        (await client.get(api.metrics_url)).text, "easyclaw_api_requests_total", **healthz
    )
    for _ in range(3):
        await client.get("/healthz")
    after = sample(
        (await client.get(api.metrics_url)).text, "easyclaw_api_requests_total", **healthz
    )
    assert after == before + 3
    # Scrapes of the metrics port are not API requests.
    assert 'route="/metrics"' not in (await client.get(api.metrics_url)).text


async def test_the_api_port_does_not_serve_metrics(api: ApiServer) -> None:
    """The API port is what an Ingress exposes: /metrics is only on its own port."""
    async with api.client(user_id=None) as anonymous:
        response = await anonymous.get("/metrics")
        assert response.status_code == 404
        assert "easyclaw_queue_jobs" not in response.text
        other = await anonymous.get(api.metrics_url.replace("/metrics", "/jobs"))
        assert other.status_code == 404


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "swagger" in docs.text.lower()

    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "EasyClaw"
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/jobs"])
    assert "get" in paths["/jobs/{job_id}"]
    assert "post" in paths["/jobs/{job_id}/cancel"]
    assert {"/stats", "/healthz", "/readyz"} <= set(paths)
    assert "/metrics" not in paths
    schemes = spec["components"]["securitySchemes"]
    assert {"UserIdHeader", "BearerJWT"} <= set(schemes)
    # The documented body is camelCase, as on the wire.
    create = spec["components"]["schemas"]["JobCreate"]["properties"]
    assert {"type", "payload", "conversationId", "idempotencyKey", "maxAttempts"} <= set(create)


async def test_stats_count_jobs_by_status(client: httpx.AsyncClient, api: ApiServer) -> None:
    empty = (await client.get("/stats")).json()
    assert empty == {
        "pending": 0,
        "ready": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "recentFailures": 0,
        "completedLastMinute": 0,
        "oldestPendingAgeSeconds": 0.0,
        "liveWorkers": 0,
    }
    await submit(client)
    await submit(client, {"type": "ECHO", "payload": {}, "runAt": "2999-01-01T00:00:00Z"})
    cancelled = await submit(client)
    await client.post(f"/jobs/{cancelled}/cancel")
    async with api.client(user_id="someone-else") as other:  # queue-wide, not per user
        await submit(other)

    stats = (await client.get("/stats")).json()
    assert (stats["pending"], stats["ready"], stats["cancelled"]) == (3, 2, 1)
    assert (stats["running"], stats["completed"], stats["failed"]) == (0, 0, 0)
    assert stats["oldestPendingAgeSeconds"] > 0


async def test_stats_follow_jobs_through_a_worker(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    done = [await submit(client) for _ in range(2)]
    failed = await submit(client, {"type": "FAIL", "payload": {}})
    for job_id in [*done, failed]:
        await read(client, job_id, wait=10)
    stats = (await client.get("/stats")).json()
    assert (stats["pending"], stats["running"]) == (0, 0)
    assert (stats["completed"], stats["completedLastMinute"]) == (2, 2)
    assert (stats["failed"], stats["recentFailures"]) == (1, 1)
    assert stats["liveWorkers"] == 1


@pytest.mark.slow
async def test_readyz_is_503_while_the_database_refuses_writes(
    api: ApiServer, client: httpx.AsyncClient, conn: psycopg.AsyncConnection[Any]
) -> None:
    database = (await (await conn.execute("SELECT current_database()")).fetchone() or [""])[0]

    async def set_read_only(read_only: bool) -> None:
        # New sessions take the database's setting: end the API's current ones
        # (its pool reconnects on the next checkout, as after a failover).
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        await conn.execute(f'ALTER DATABASE "{database}" {setting}')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = 'easyclaw-api'"
        )

    async def readyz() -> httpx.Response:
        return await client.get("/readyz")

    assert (await readyz()).status_code == 200
    await set_read_only(True)
    refused = await wait_for(
        lambda: readyz_when(readyz, lambda response: response.status_code == 503)
    )
    error = assert_error(refused, 503, "DATABASE_NOT_WRITABLE")
    assert "read-only" in error["message"]
    # Reads still work; a write is a 503 saying why, not a 500.
    assert (await client.get("/jobs")).status_code == 200
    response = await client.post("/jobs", json={"type": "ECHO", "payload": {}})
    assert_error(response, 503, "DATABASE_NOT_WRITABLE")

    await set_read_only(False)
    await wait_for(lambda: readyz_when(readyz, lambda response: response.status_code == 200))
    await submit(client)


async def readyz_when(
    call: Callable[[], Awaitable[httpx.Response]], accept: Callable[[httpx.Response], bool]
) -> httpx.Response | None:
    response = await call()
    return response if accept(response) else None
