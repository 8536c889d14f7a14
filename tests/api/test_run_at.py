"""``runAt``: a time in the past means now, so no job jumps the queue and the
queue's oldest-pending age stays a real waiting time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.api.conftest import read, submit
from tests.api.test_health_and_stats import sample
from tests.support.api_server import ApiServer
from tests.worker.helpers import Conn


async def test_a_run_at_in_the_far_past_means_now_and_metrics_stay_sane(
    client: httpx.AsyncClient, api: ApiServer, conn: Conn
) -> None:
    ancient = await submit(client, {"type": "ECHO", "payload": {}, "runAt": "0002-01-01T00:00:00Z"})
    recent = await submit(client, {"type": "ECHO", "payload": {}})
    job = await read(client, ancient)
    assert job["runAt"] == job["createdAt"]

    stats = (await client.get("/stats")).json()
    assert stats["pending"] == 2
    assert 0 <= stats["oldestPendingAgeSeconds"] < 60
    metrics = (await client.get(api.metrics_url)).text
    assert 0 <= sample(metrics, "easyclaw_queue_oldest_pending_age_seconds") < 60
    # The job submitted first is still claimed first (same priority, earlier run_at).
    cursor = await conn.execute(
        "SELECT id FROM jobs WHERE status = 'PENDING' ORDER BY priority DESC, run_at, id"
    )
    assert [str(row[0]) for row in await cursor.fetchall()] == [ancient, recent]


async def test_a_run_at_in_the_future_is_kept(client: httpx.AsyncClient) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    job_id = await submit(client, {"type": "ECHO", "payload": {}, "runAt": later.isoformat()})
    assert datetime.fromisoformat((await read(client, job_id))["runAt"]) == later
