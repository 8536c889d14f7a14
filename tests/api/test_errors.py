"""Every error is a JSON ``{"error": CODE, "message": ...}`` with the right status, never a 500.

Cases that share a rule are checked as a table against one server, to keep the
suite fast; a failure names the request that broke the rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import orjson
import psycopg
import pytest

from easyclaw.core import queue
from tests.api.conftest import GUIDE_JOB, assert_error, read, submit
from tests.support.api_server import ApiServer, serve_api
from tests.support.settings import make_settings

Conn = psycopg.AsyncConnection[Any]
JSON = {"content-type": "application/json"}


def deeply_nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def assert_nothing_enqueued(client: httpx.AsyncClient) -> None:
    body = (await client.get("/jobs")).json()
    assert body["count"] == 0, body


# ---------------------------------------------------------------- malformed and invalid bodies


async def test_malformed_json_is_400_invalid_json(client: httpx.AsyncClient) -> None:
    for raw in [
        b'{"type": "ECHO",',
        b"{'type': 'ECHO'}",
        b'{"type": "ECHO"} trailing',
        b"\xff\xfe{}",
        b"not json at all",
    ]:
        response = await client.post("/jobs", content=raw, headers=JSON)
        error = assert_error(response, 400, "INVALID_JSON")
        assert error["message"] == "the request body is not valid JSON"
    await assert_nothing_enqueued(client)


INVALID_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"payload": {"message": "hi"}}, "type"),
    ({"type": 42}, "type"),
    ({"type": ""}, "type"),
    ({"type": "ECHO", "priority": "high"}, "priority"),
    ({"type": "ECHO", "priority": 1.5}, "priority"),
    ({"type": "ECHO", "priority": 1001}, "priority"),
    ({"type": "ECHO", "priority": -1001}, "priority"),
    ({"type": "ECHO", "maxAttempts": 0}, "maxAttempts"),
    ({"type": "ECHO", "maxAttempts": 101}, "maxAttempts"),
    ({"type": "ECHO", "timeoutSeconds": 0}, "timeoutSeconds"),
    ({"type": "ECHO", "runAt": "next tuesday"}, "runAt"),
    ({"type": "ECHO", "conversationId": "not-a-uuid"}, "conversationId"),
    ({"type": "ECHO", "idempotencyKey": ""}, "idempotencyKey"),
    ({"type": "ECHO", "idempotencyKey": "k" * 201}, "idempotencyKey"),
    ({"type": "ECHO", "payload": {}, "colour": "red"}, "colour"),
    ({"type": "ECHO", "payload": [1, 2]}, "payload"),
    ({"type": "ECHO", "payload": "hello"}, "payload"),
    ({"type": "ECHO", "payload": None}, "payload"),
]


async def test_invalid_fields_are_422_validation_errors_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    for body, field in INVALID_FIELDS:
        error = assert_error(await client.post("/jobs", json=body), 422, "VALIDATION_ERROR")
        assert field in error["message"], (body, error)
        assert field in [problem["field"] for problem in error["details"]], (body, error)
    await assert_nothing_enqueued(client)
    for priority in (-1000, 1000):  # the bounds themselves are fine
        job_id = await submit(client, {**GUIDE_JOB, "priority": priority})
        assert (await read(client, job_id))["priority"] == priority


async def test_a_body_that_is_not_a_json_object_is_422(client: httpx.AsyncClient) -> None:
    for raw in [b"[]", b"null", b'"ECHO"', b"42", b""]:
        response = await client.post("/jobs", content=raw, headers=JSON)
        assert_error(response, 422, "VALIDATION_ERROR")
    await assert_nothing_enqueued(client)


async def test_an_unknown_job_type_is_422_and_names_the_known_types(
    client: httpx.AsyncClient,
) -> None:
    for name in ("NOPE", "echo"):
        response = await client.post("/jobs", json={"type": name, "payload": {}})
        error = assert_error(response, 422, "UNKNOWN_JOB_TYPE")
        assert repr(name) in error["message"]
        assert "ECHO" in error["message"]
        assert "SLEEP" in error["message"]
    await assert_nothing_enqueued(client)


async def test_values_the_database_cannot_store_are_422_not_500(
    client: httpx.AsyncClient,
) -> None:
    unstorable: list[dict[str, Any]] = [
        {"type": "ECHO", "payload": {"text": "a\u0000b"}},  # jsonb has no NUL
        {"type": "ECHO", "payload": {"a\u0000b": 1}},
        {"type": "ECHO", "payload": {"n": 10**30}},  # beyond 64 bits
        {"type": "ECHO", "payload": deeply_nested(300)},
        {**GUIDE_JOB, "idempotencyKey": "key\u0000"},  # text has no NUL
        {**GUIDE_JOB, "runAt": "9999-12-31T23:59:59-14:00"},  # after year 10000 in UTC
        {**GUIDE_JOB, "runAt": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
    ]
    for body in unstorable:
        assert_error(await client.post("/jobs", json=body), 422, "VALIDATION_ERROR")
    assert_error(await client.get("/jobs", params={"type": "EC\x00HO"}), 422, "VALIDATION_ERROR")
    # Python's JSON parser accepts NaN and Infinity; JSON (and jsonb) cannot hold them,
    # and storing them as null would change the payload behind the user's back.
    for raw in [
        b'{"type": "ECHO", "payload": {"x": NaN}}',
        b'{"type": "ECHO", "payload": {"x": [-Infinity]}}',
    ]:
        response = await client.post("/jobs", content=raw, headers=JSON)
        assert_error(response, 422, "VALIDATION_ERROR")
    await assert_nothing_enqueued(client)


async def test_a_payload_nested_beyond_the_parsers_limit_is_a_400_json_error(
    client: httpx.AsyncClient,
) -> None:
    raw = b'{"type": "ECHO", "payload": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    response = await client.post("/jobs", content=raw, headers=JSON)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "message"}


# ---------------------------------------------------------------- body size limit


@pytest.fixture
async def small_api(database_url: str) -> AsyncIterator[ApiServer]:
    async with serve_api(make_settings(database_url, api_max_body_bytes=1000)) as server:
        yield server


def body_of_size(size: int) -> bytes:
    """A valid ECHO submission exactly ``size`` bytes long."""
    empty = orjson.dumps({"type": "ECHO", "payload": {"message": ""}})
    body = orjson.dumps({"type": "ECHO", "payload": {"message": "x" * (size - len(empty))}})
    assert len(body) == size
    return body


async def chunked(data: bytes, size: int = 128) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_the_body_size_limit_holds_for_declared_and_chunked_bodies(
    small_api: ApiServer,
) -> None:
    async with small_api.client() as client:
        at_limit = await client.post("/jobs", content=body_of_size(1000), headers=JSON)
        assert at_limit.status_code == 201, at_limit.text
        streamed_at_limit = await client.post(
            "/jobs", content=chunked(body_of_size(1000)), headers=JSON
        )
        assert streamed_at_limit.request.headers["transfer-encoding"] == "chunked"
        assert streamed_at_limit.status_code == 201, streamed_at_limit.text

    async with small_api.client() as client:
        declared = await client.post("/jobs", content=body_of_size(1001), headers=JSON)
        assert declared.request.headers["content-length"] == "1001"
        error = assert_error(declared, 413, "PAYLOAD_TOO_LARGE")
        assert "1000 bytes" in error["message"]

    async with small_api.client() as client:
        streamed = await client.post("/jobs", content=chunked(body_of_size(1001)), headers=JSON)
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in streamed.request.headers
        assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")

    async with small_api.client() as client:  # the server carries on; nothing oversized landed
        assert (await client.get("/jobs")).json()["count"] == 2


# ---------------------------------------------------------------- who is calling

PROTECTED = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", f"/jobs/{uuid4()}"),
    ("POST", f"/jobs/{uuid4()}/cancel"),
    ("GET", "/stats"),
]


async def test_every_job_endpoint_needs_an_x_user_id(api: ApiServer) -> None:
    async with api.client(user_id=None) as anonymous:
        for method, path in PROTECTED:
            response = await anonymous.request(method, path, json=GUIDE_JOB)
            error = assert_error(response, 401, "UNAUTHORIZED")
            assert "x-user-id" in error["message"]
            assert response.headers["www-authenticate"] == "Bearer"
        # Authentication comes first: strangers get no list of job types.
        assert_error(await anonymous.post("/jobs", json={"type": "NOPE"}), 401, "UNAUTHORIZED")
    async with api.client(user_id=None, headers={"x-user-id": ""}) as empty:
        assert_error(await empty.post("/jobs", json=GUIDE_JOB), 401, "UNAUTHORIZED")


async def test_x_user_id_must_look_like_a_user_id(api: ApiServer) -> None:
    for user_id in ["alice bob", "alice/../bob", "<script>", "u" * 201]:
        async with api.client(user_id=user_id) as client:
            for method, path in PROTECTED:
                response = await client.request(method, path, json=GUIDE_JOB)
                assert_error(response, 401, "UNAUTHORIZED")
    # Ids as identity providers issue them are fine.
    for user_id in ["user_2abcXYZ", "auth0|64f1c2", "alice@example.com", "u" * 200]:
        async with api.client(user_id=user_id) as client:
            await submit(client)


# ---------------------------------------------------------------- routes and ids


async def test_an_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("GET", "/jobs/abc/def"),
        ("POST", f"/jobs/{uuid4()}/retry"),
        ("GET", "/v2/jobs"),
    ]:
        assert_error(await client.request(method, path), 404, "NOT_FOUND")


async def test_a_wrong_method_is_405_json_with_allow(client: httpx.AsyncClient) -> None:
    for method, path, allowed in [
        ("PUT", f"/jobs/{uuid4()}", "GET"),
        ("DELETE", f"/jobs/{uuid4()}", "GET"),
        ("GET", f"/jobs/{uuid4()}/cancel", "POST"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/jobs", "POST"),
    ]:
        response = await client.request(method, path)
        assert_error(response, 405, "METHOD_NOT_ALLOWED")
        assert allowed in response.headers["allow"]


async def test_a_job_id_that_names_no_job_is_404(client: httpx.AsyncClient) -> None:
    missing = uuid4()
    error = assert_error(await client.get(f"/jobs/{missing}"), 404, "JOB_NOT_FOUND")
    assert str(missing) in error["message"]
    assert_error(await client.post(f"/jobs/{missing}/cancel"), 404, "JOB_NOT_FOUND")
    # Ids are UUIDs, so anything else cannot name a job: not found, not a validation error.
    for job_id in ["not-a-uuid", "123", "x" * 300]:
        assert_error(await client.get(f"/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
        response = await client.get(f"/jobs/{job_id}", params={"wait": 5})
        assert_error(response, 404, "JOB_NOT_FOUND")
        assert_error(await client.post(f"/jobs/{job_id}/cancel"), 404, "JOB_NOT_FOUND")


# ---------------------------------------------------------------- conversations


async def new_conversation(conn: Conn, user_id: str) -> UUID:
    await queue.ensure_user(conn, user_id)
    cursor = await conn.execute(
        "INSERT INTO conversations (user_id) VALUES (%s) RETURNING id", (user_id,)
    )
    row = await cursor.fetchone()
    assert row is not None
    conversation_id: UUID = row[0]
    return conversation_id


async def test_a_job_may_only_continue_a_conversation_of_its_user(
    client: httpx.AsyncClient, conn: Conn
) -> None:
    missing = uuid4()
    response = await client.post("/jobs", json={**GUIDE_JOB, "conversationId": str(missing)})
    error = assert_error(response, 422, "UNKNOWN_CONVERSATION")
    assert str(missing) in error["message"]

    theirs = await new_conversation(conn, "someone-else")
    response = await client.post("/jobs", json={**GUIDE_JOB, "conversationId": str(theirs)})
    assert_error(response, 422, "UNKNOWN_CONVERSATION")  # as if it did not exist
    await assert_nothing_enqueued(client)

    mine = await new_conversation(conn, "test-user-id")
    job_id = await submit(client, {**GUIDE_JOB, "conversationId": str(mine)})
    assert (await read(client, job_id))["conversationId"] == str(mine)


async def test_a_query_parameter_given_twice_is_a_422_not_the_last_value(
    client: httpx.AsyncClient,
) -> None:
    # Found by tests/api/test_fuzz.py: the framework silently kept the last value.
    error = assert_error(
        await client.get("/jobs", params=[("type", "ECHO"), ("type", "CHAT")]),
        422,
        "VALIDATION_ERROR",
    )
    assert "'type'" in error["message"]
    assert error["details"] == [{"loc": ["query", "type"], "msg": "given more than once"}]
    assert (await client.get("/jobs", params={"type": "ECHO", "limit": 5})).status_code == 200
