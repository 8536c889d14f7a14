"""POST /jobs with a concurrency key, and CHAT's conversation key, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import assert_error, submit


async def read(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_concurrency_key_and_limit_are_kept_and_shown(client: httpx.AsyncClient) -> None:
    keyed = await submit(
        client,
        {"type": "ECHO", "payload": {}, "concurrencyKey": "tenant:acme/reports",
         "concurrencyLimit": 3},
    )  # fmt: skip
    plain_key = await submit(client, {"type": "ECHO", "payload": {}, "concurrencyKey": "k"})
    job = await read(client, keyed)
    assert (job["concurrencyKey"], job["concurrencyLimit"]) == ("tenant:acme/reports", 3)
    job = await read(client, plain_key)
    assert (job["concurrencyKey"], job["concurrencyLimit"]) == ("k", 1)  # 1 unless given


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"concurrencyKey": ""}, "concurrencyKey"),
        ({"concurrencyKey": "has space"}, "concurrencyKey"),
        ({"concurrencyKey": "trailing-newline\n"}, "concurrencyKey"),
        ({"concurrencyKey": "x" * 201}, "concurrencyKey"),
        ({"concurrencyKey": 7}, "concurrencyKey"),
        ({"concurrencyKey": "k", "concurrencyLimit": 0}, "concurrencyLimit"),
        ({"concurrencyKey": "k", "concurrencyLimit": 1001}, "concurrencyLimit"),
        ({"concurrencyLimit": 2}, "concurrencyLimit"),
    ],
)
async def test_bad_keys_and_limits_are_422_naming_the_field(
    client: httpx.AsyncClient, extra: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs", json={"type": "ECHO", "payload": {}, **extra})
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert field in response.text, body


async def test_chat_is_keyed_by_its_conversation_which_exists_from_submission(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, {"type": "CHAT", "payload": {"message": "Hi there"}})
    opening = await read(client, first)
    # A new conversation takes the job's id and exists at once, so the next
    # message can be sent before the first is answered.
    assert opening["conversationId"] == first
    assert (opening["concurrencyKey"], opening["concurrencyLimit"]) == (f"conversation:{first}", 1)
    follow_up = await submit(
        client, {"type": "CHAT", "payload": {"message": "And then?"}, "conversationId": first}
    )
    job = await read(client, follow_up)
    assert (job["conversationId"], job["concurrencyKey"]) == (first, f"conversation:{first}")


async def test_chat_refuses_a_key_of_its_own(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs", json={"type": "CHAT", "payload": {"message": "hi"}, "concurrencyKey": "mine"}
    )
    body = assert_error(response, 422, "VALIDATION_ERROR")
    assert "keyed by their conversation" in body["message"]


async def test_a_repeated_chat_submission_starts_one_conversation(
    client: httpx.AsyncClient,
) -> None:
    body = {"type": "CHAT", "payload": {"message": "once"}, "idempotencyKey": "chat-1"}
    first = await client.post("/jobs", json=body)
    again = await client.post("/jobs", json=body)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert first.json()["jobId"] == again.json()["jobId"]


async def test_the_same_idempotency_key_with_another_concurrency_key_conflicts(
    client: httpx.AsyncClient,
) -> None:
    body = {"type": "ECHO", "payload": {}, "idempotencyKey": "i-1", "concurrencyKey": "a"}
    await submit(client, body)
    response = await client.post("/jobs", json={**body, "concurrencyKey": "b"})
    assert_error(response, 409, "IDEMPOTENCY_CONFLICT")
