"""What the API accepts as a CHAT job, before anything is queued."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.api.conftest import assert_error, submit


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": 42}, "message"),
        ({"message": "hi", "conversationId": "x"}, "conversationId"),
    ],
)
async def test_invalid_chat_payloads_are_422_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    response = await client.post("/jobs", json={"type": "CHAT", "payload": payload})
    body = assert_error(response, 422, "INVALID_PAYLOAD")
    assert [problem["field"] for problem in body["details"]] == [field]


async def test_an_unknown_conversation_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs",
        json={"type": "CHAT", "payload": {"message": "hi"}, "conversationId": str(uuid4())},
    )
    assert_error(response, 422, "UNKNOWN_CONVERSATION")


async def test_the_guides_chat_job_is_accepted(client: httpx.AsyncClient) -> None:
    await submit(client, {"type": "CHAT", "payload": {"message": "Hello from EasyClaw!"}})
