"""RESEARCH payloads are checked at POST /jobs: a bad one is 422 and nothing is enqueued."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import assert_error


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "exactly one of url and query"),
        ({"url": "https://example.org/", "query": "octopus"}, "exactly one of url and query"),
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "https://user:secret@example.org/"}, "credentials"),
        ({"query": ""}, "at least 1 character"),
    ],
)
async def test_invalid_research_payloads_are_422(
    client: httpx.AsyncClient, payload: dict[str, Any], message: str
) -> None:
    response = await client.post("/jobs", json={"type": "RESEARCH", "payload": payload})
    body = assert_error(response, 422, "INVALID_PAYLOAD")
    assert message in body["message"]
    assert (await client.get("/jobs")).json()["count"] == 0


async def test_a_valid_research_job_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs", json={"type": "RESEARCH", "payload": {"url": "https://example.org/"}}
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "PENDING"
