"""Identifiers in requests are matched as a whole: a user id or a job id with
anything around it (a trailing newline, braces, spaces) is refused."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import pytest

from easyclaw.api.auth import Authenticator
from easyclaw.api.errors import ApiError
from easyclaw.cli.settings import Settings
from tests.api.conftest import assert_error, submit
from tests.support.api_server import ApiServer


async def test_a_user_id_with_a_trailing_newline_is_refused(settings: Settings) -> None:
    # HTTP/1.1 cannot carry a newline inside a header value (the parser answers 400,
    # below), but a proxy could hand one over: the check itself must refuse it.
    async with httpx.AsyncClient() as http:
        authenticator = Authenticator(settings, http)
        assert await authenticator.user_id({"x-user-id": "alice"}) == "alice"
        for user_id in ["alice\n", "alice\r\n", "\nalice"]:
            with pytest.raises(ApiError) as refused:
                await authenticator.user_id({"x-user-id": user_id})
            assert refused.value.status_code == 401
            assert "x-user-id" in refused.value.message


async def test_a_raw_newline_in_the_user_id_header_is_a_400(api: ApiServer) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /jobs HTTP/1.1\r\nHost: api\r\nx-user-id: alice\n\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"400", status_line


async def test_a_job_id_is_read_only_in_its_own_forms(client: httpx.AsyncClient) -> None:
    job_id = await submit(client)
    for form in [job_id, job_id.upper(), job_id.replace("-", "")]:
        assert (await client.get(f"/jobs/{form}")).status_code == 200, form
    for form in [f"{job_id}\n", f" {job_id}", f"{{{job_id}}}", f"urn:uuid:{job_id}"]:
        response = await client.get(f"/jobs/{quote(form, safe='')}")
        assert_error(response, 404, "JOB_NOT_FOUND")
