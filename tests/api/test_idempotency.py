"""Retrying a submission with the same idempotency key returns the job it created."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api.conftest import GUIDE_JOB, assert_error, submit
from tests.support.api_server import ApiServer


async def job_count(client: httpx.AsyncClient) -> int:
    count: int = (await client.get("/jobs")).json()["count"]
    return count


async def test_a_retry_with_the_same_header_key_returns_the_same_job(
    client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await client.post("/jobs", json=GUIDE_JOB, headers=key)
    assert first.status_code == 201, first.text
    again = await client.post("/jobs", json=GUIDE_JOB, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.json()["status"] == "PENDING"
    assert again.json()["message"] == "Job already exists for this idempotency key"
    assert await job_count(client) == 1


async def test_the_body_field_works_like_the_header_and_is_the_same_key(
    client: httpx.AsyncClient,
) -> None:
    body = {**GUIDE_JOB, "idempotencyKey": "order-43"}
    first = await client.post("/jobs", json=body)
    again = await client.post("/jobs", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["jobId"] == first.json()["jobId"]

    first = await client.post("/jobs", json=GUIDE_JOB, headers={"Idempotency-Key": "k"})
    again = await client.post("/jobs", json={**GUIDE_JOB, "idempotencyKey": "k"})
    both = await client.post(
        "/jobs", json={**GUIDE_JOB, "idempotencyKey": "k"}, headers={"Idempotency-Key": "k"}
    )
    assert (first.status_code, again.status_code, both.status_code) == (201, 200, 200)
    assert first.json()["jobId"] == again.json()["jobId"] == both.json()["jobId"]


async def test_a_retry_answers_with_the_jobs_current_status(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k"}
    job_id = await submit(client, headers=key)
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    again = await client.post("/jobs", json=GUIDE_JOB, headers=key)
    assert again.status_code == 200
    assert again.json()["jobId"] == job_id
    assert again.json()["status"] == "CANCELLED"


async def test_the_same_key_from_another_user_creates_a_new_job(api: ApiServer) -> None:
    key = {"Idempotency-Key": "shared-key"}
    async with api.client(user_id="alice") as alice, api.client(user_id="bob") as bob:
        alices = await submit(alice, headers=key)
        bobs = await submit(bob, headers=key)
        assert alices != bobs
        assert await job_count(alice) == await job_count(bob) == 1


async def test_the_same_key_with_a_different_request_is_409(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k"}
    job_id = await submit(client, headers=key)
    different: list[dict[str, Any]] = [
        {"type": "ECHO", "payload": {"message": "something else"}},
        {"type": "SLEEP", "payload": {"message": "Hello from EasyClaw!"}},
        {"type": "ECHO", "payload": {}},
    ]
    for body in different:
        error = assert_error(
            await client.post("/jobs", json=body, headers=key), 409, "IDEMPOTENCY_CONFLICT"
        )
        assert job_id in error["message"]
    assert await job_count(client) == 1


async def test_a_key_that_is_empty_too_long_or_contradicted_is_422(
    client: httpx.AsyncClient,
) -> None:
    for key in ["", "k" * 201]:
        response = await client.post("/jobs", json=GUIDE_JOB, headers={"Idempotency-Key": key})
        assert "Idempotency-Key" in assert_error(response, 422, "VALIDATION_ERROR")["message"]
    response = await client.post(
        "/jobs", json={**GUIDE_JOB, "idempotencyKey": "a"}, headers={"Idempotency-Key": "b"}
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert "Idempotency-Key" in error["message"]
    assert await job_count(client) == 0


async def test_concurrent_retries_create_exactly_one_job(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/jobs", json=GUIDE_JOB, headers={"Idempotency-Key": "burst"})
            for _ in range(10)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({response.json()["jobId"] for response in responses}) == 1
    assert await job_count(client) == 1
