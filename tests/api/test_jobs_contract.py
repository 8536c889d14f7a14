"""The /jobs contract that the getting-started guide shows and users script against."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import orjson
import psycopg

from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.worker.runner import Worker
from tests.api.conftest import GUIDE_JOB, assert_error, read, submit
from tests.support.notifications import heard_until, heard_until_marker, listening

JOB_FIELDS = {
    "id",
    "status",
    "type",
    "payload",
    "result",
    "error",
    "conversationId",
    "concurrencyKey",
    "concurrencyLimit",
    "priority",
    "attempts",
    "maxAttempts",
    "timeoutSeconds",
    "cancelRequested",
    "runAt",
    "createdAt",
    "updatedAt",
    "startedAt",
    "finishedAt",
}


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no time zone"
    return parsed


async def list_ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/jobs", params=params)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


async def walk_pages(client: httpx.AsyncClient, **params: Any) -> list[list[str]]:
    """Follow nextCursor until it is null; the ids of each page."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == len(body["jobs"])
        pages.append([job["id"] for job in body["jobs"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


# ---------------------------------------------------------------- POST /jobs


async def test_submitting_the_guide_job_answers_201_with_its_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/jobs", json=GUIDE_JOB)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"jobId", "status", "message"}
    assert UUID(body["jobId"])
    assert body["status"] == "PENDING"
    assert body["message"] == "Job created successfully"
    again = await client.post("/jobs", json=GUIDE_JOB)
    assert again.json()["jobId"] != body["jobId"]  # without a key, every request is a new job


async def test_a_submission_wakes_the_workers_after_its_commit_not_inside_it(
    client: httpx.AsyncClient, database_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # A NOTIFY inside the insert's transaction would hold PostgreSQL's
    # database-wide notify lock through the commit's flush, one submission
    # after another; the API sends its wake-up ("submitted") after the commit,
    # so nothing (the insert trigger's "inserted") comes before it.
    async with listening(database_url) as listener:
        for body in (
            GUIDE_JOB,
            {"type": "CHAT", "payload": {"message": "hi"}},  # starts a conversation with it
            dict(GUIDE_JOB, concurrencyKey="one-at-a-time"),  # locks its key meanwhile
        ):
            response = await client.post("/jobs", json=body)
            assert response.status_code == 201, response.text
            assert await heard_until(listener, "submitted") == ["submitted"], body
        # A repeated idempotent request creates nothing, and wakes nobody.
        first = await client.post("/jobs", json=GUIDE_JOB, headers={"Idempotency-Key": "once"})
        assert first.status_code == 201, first.text
        assert await heard_until(listener, "submitted") == ["submitted"]
        again = await client.post("/jobs", json=GUIDE_JOB, headers={"Idempotency-Key": "once"})
        assert again.status_code == 200, again.text
        assert await heard_until_marker(listener, conn) == []


# ---------------------------------------------------------------- GET /jobs/{id}


async def test_a_new_job_reads_back_as_pending_with_every_field_in_camel_case(
    client: httpx.AsyncClient,
) -> None:
    job_id = await submit(client)
    job = await read(client, job_id)
    assert set(job) == JOB_FIELDS
    assert job["id"] == job_id
    assert job["status"] == "PENDING"
    assert job["type"] == "ECHO"
    assert job["payload"] == {"message": "Hello from EasyClaw!"}
    assert job["result"] is None
    assert job["error"] is None
    assert job["attempts"] == 0
    assert job["maxAttempts"] == 3  # the job_default_max_attempts setting
    assert job["priority"] == 0
    assert job["cancelRequested"] is False
    assert job["conversationId"] is None
    assert (job["concurrencyKey"], job["concurrencyLimit"]) == (None, None)
    assert job["startedAt"] is None
    assert job["finishedAt"] is None
    created = parse_time(job["createdAt"])
    assert parse_time(job["updatedAt"]) >= created
    assert parse_time(job["runAt"]) >= created


async def test_optional_submission_fields_are_stored(client: httpx.AsyncClient) -> None:
    job_id = await submit(
        client,
        {
            "type": "SLEEP",
            "payload": {"seconds": 1},
            "priority": 7,
            "maxAttempts": 5,
            "timeoutSeconds": 12.5,
            "runAt": "2099-01-01T00:00:00Z",
        },
    )
    job = await read(client, job_id)
    assert (job["type"], job["priority"], job["maxAttempts"], job["timeoutSeconds"]) == (
        "SLEEP",
        7,
        5,
        12.5,
    )
    assert parse_time(job["runAt"]) == datetime.fromisoformat("2099-01-01T00:00:00+00:00")


async def test_a_finished_job_shows_its_result_or_its_error(
    client: httpx.AsyncClient, worker: Worker
) -> None:
    completed = await read(client, await submit(client), wait=10)
    assert completed["status"] == "COMPLETED"
    assert completed["result"] == {"message": "Hello from EasyClaw!"}  # ECHO returns its payload
    assert completed["error"] is None
    assert completed["attempts"] == 1
    started, finished = parse_time(completed["startedAt"]), parse_time(completed["finishedAt"])
    assert parse_time(completed["createdAt"]) <= started <= finished

    failing = {"type": "FAIL", "payload": {"reason": "no such city"}}
    failed = await read(client, await submit(client, failing), wait=10)
    assert failed["status"] == "FAILED"
    assert failed["result"] is None
    assert "no such city" in failed["error"]
    assert failed["finishedAt"] is not None


# ---------------------------------------------------------------- GET /jobs


async def test_listing_returns_the_users_jobs_newest_first(client: httpx.AsyncClient) -> None:
    nothing = await client.get("/jobs")
    assert nothing.status_code == 200, nothing.text
    assert nothing.json() == {"jobs": [], "count": 0, "nextCursor": None}

    created = [await submit(client) for _ in range(3)]
    response = await client.get("/jobs", params={"limit": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"jobs", "count", "nextCursor"}
    assert body["count"] == 3
    assert [job["id"] for job in body["jobs"]] == created[::-1]
    assert body["nextCursor"] is None  # fewer than `limit`: nothing more to read
    assert set(body["jobs"][0]) == JOB_FIELDS


async def test_listing_defaults_to_20_jobs_and_allows_1_to_100(
    client: httpx.AsyncClient, pool: AsyncPool
) -> None:
    async with pool.connection() as conn:
        await queue.ensure_user(conn, "test-user-id")
        await queue.enqueue_many(
            conn, user_id="test-user-id", type="ECHO", payloads=[{"i": i} for i in range(105)]
        )
    default = (await client.get("/jobs")).json()
    assert default["count"] == 20
    assert default["nextCursor"] is not None
    assert len(await list_ids(client, limit=1)) == 1
    assert len(await list_ids(client, limit=100)) == 100
    for limit in ["0", "101", "-1", "ten", "1.5"]:
        response = await client.get("/jobs", params={"limit": limit})
        assert "limit" in assert_error(response, 422, "VALIDATION_ERROR")["message"]


async def test_listing_filters_by_status_and_type(client: httpx.AsyncClient) -> None:
    echo_pending = await submit(client)
    echo_cancelled = await submit(client)
    sleep_pending = await submit(client, {"type": "SLEEP", "payload": {"seconds": 1}})
    assert (await client.post(f"/jobs/{echo_cancelled}/cancel")).status_code == 200

    assert await list_ids(client, status="PENDING") == [sleep_pending, echo_pending]
    assert await list_ids(client, status="CANCELLED") == [echo_cancelled]
    assert await list_ids(client, status="COMPLETED") == []
    assert await list_ids(client, type="ECHO") == [echo_cancelled, echo_pending]
    assert await list_ids(client, type="SLEEP") == [sleep_pending]
    assert await list_ids(client, type="ECHO", status="PENDING") == [echo_pending]
    assert await list_ids(client, type="NOPE") == []


async def test_an_unknown_status_filter_is_rejected(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await client.get("/jobs", params={"status": "DONE"}), 422, "VALIDATION_ERROR"
    )
    assert "PENDING" in body["message"]  # names the valid statuses


async def test_cursor_pagination_visits_every_job_exactly_once(
    client: httpx.AsyncClient,
) -> None:
    created = [await submit(client, {"type": "ECHO", "payload": {"i": i}}) for i in range(7)]
    for limit in (3, 7, 1):  # a short last page, one exactly full, one job per page
        pages = await walk_pages(client, limit=limit)
        assert all(len(page) <= limit for page in pages)
        assert [job_id for page in pages for job_id in page] == created[::-1], limit


async def test_pagination_orders_jobs_created_in_the_same_instant_by_id(
    client: httpx.AsyncClient, pool: AsyncPool
) -> None:
    # One statement: every row has the same created_at, so only the id breaks ties.
    async with pool.connection() as conn:
        await queue.ensure_user(conn, "test-user-id")
        await queue.enqueue_many(
            conn, user_id="test-user-id", type="ECHO", payloads=[{"i": i} for i in range(9)]
        )
    pages = await walk_pages(client, limit=2)
    seen = [job_id for page in pages for job_id in page]
    assert len(set(seen)) == len(seen) == 9
    assert seen == sorted(seen, key=UUID, reverse=True)


async def test_pagination_keeps_the_filter_across_pages(client: httpx.AsyncClient) -> None:
    echoes = []
    for i in range(5):
        echoes.append(await submit(client))
        await submit(client, {"type": "SLEEP", "payload": {"seconds": i}})
    pages = await walk_pages(client, limit=2, type="ECHO")
    assert [job_id for page in pages for job_id in page] == echoes[::-1]


async def test_jobs_submitted_while_paging_do_not_shift_later_pages(
    client: httpx.AsyncClient,
) -> None:
    created = [await submit(client) for _ in range(4)]
    first = (await client.get("/jobs", params={"limit": 2})).json()
    await submit(client)  # newer than everything: must not appear in the older pages
    second = (await client.get("/jobs", params={"limit": 2, "cursor": first["nextCursor"]})).json()
    assert [job["id"] for job in first["jobs"] + second["jobs"]] == created[::-1]


def as_cursor(value: object) -> str:
    """A cursor-shaped token (unpadded url-safe base64 of JSON) holding ``value``."""
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


async def test_a_cursor_this_api_did_not_return_is_rejected(client: httpx.AsyncClient) -> None:
    await submit(client)
    good = (await client.get("/jobs", params={"limit": 1})).json()["nextCursor"]
    created_at, job_id = orjson.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    for cursor in [
        "garbage",
        "!!!",
        "é",
        "x" * 201,
        as_cursor(None),
        as_cursor({"a": 1}),
        as_cursor([1, 2]),
        as_cursor(["2024-01-01T00:00:00+00:00", "not-a-uuid"]),
        as_cursor(["not-a-date", str(uuid4())]),
        as_cursor(["2024-01-01T00:00:00+00:00", str(uuid4()), "extra"]),
        # Both were a 500 (and a dropped connection): elements of the wrong type.
        as_cursor(["2024-01-01T00:00:00+00:00", 1]),
        as_cursor(["2024-01-01T00:00:00+00:00", [1]]),
        as_cursor([{"a": 1}, str(uuid4())]),
        as_cursor(["2024-01-01T00:00:00", str(uuid4())]),  # no time zone
        as_cursor(["2024-01-01T00:00:00+00:00:30", str(uuid4())]),  # offset in seconds
        as_cursor([created_at, job_id.replace("-", "")]),  # another spelling of a real one
        good + "=",
        good[:-1],
    ]:
        response = await client.get("/jobs", params={"cursor": cursor})
        code = "INVALID_CURSOR" if len(cursor) <= 200 else "VALIDATION_ERROR"
        error = assert_error(response, 422, code)
        assert "cursor" in error["message"], (cursor, error)
        assert error["details"][0]["field"].endswith("cursor"), (cursor, error)
        assert response.headers.get("connection") != "close", cursor
    assert (await client.get("/jobs", params={"cursor": good})).status_code == 200


async def test_concurrent_submissions_all_land(
    client: httpx.AsyncClient,
) -> None:
    ids = await asyncio.gather(
        *(submit(client, {"type": "ECHO", "payload": {"i": i}}) for i in range(20))
    )
    assert sorted(await list_ids(client, limit=100)) == sorted(ids)
