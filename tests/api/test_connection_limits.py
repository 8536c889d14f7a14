"""The API bounds what a connection may cost it: the size of a request's head
(431), the time to send it (closed, 408), the number of open connections (503),
and idle keep-alive time. Real servers, raw sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core.jobtypes import JobTypeRegistry
from tests.support.api_server import ApiServer, api_process, serve_api
from tests.support.settings import make_settings
from tests.support.waiting import wait_for


@asynccontextmanager
async def limited_api(
    database_url: str, registry: JobTypeRegistry, **limits: object
) -> AsyncIterator[ApiServer]:
    async with serve_api(make_settings(database_url, **limits), registry) as api:
        yield api


async def open_raw(api_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = api_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def request_head(target: str = "/healthz", **headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: api", "x-user-id: test-user-id"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


async def read_one_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers, _ = parse_response(head)
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def test_a_request_head_larger_than_the_limit_is_a_431(
    database_url: str, registry: JobTypeRegistry
) -> None:
    async with limited_api(database_url, registry, api_max_header_bytes=16_384) as api:
        reader, writer = await open_raw(api.url)
        writer.write(request_head("/jobs", **{"x-padding": "x" * 20_000}))
        status, headers, body = parse_response(await asyncio.wait_for(reader.read(), 5))
        writer.close()
        assert status == 431
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        error = orjson.loads(body)
        assert error["error"] == "HEADERS_TOO_LARGE"
        assert "16384 bytes" in error["message"]
        # Heads within the limit are served, each request of a kept-alive
        # connection counted on its own.
        reader, writer = await open_raw(api.url)
        for _ in range(3):
            writer.write(request_head("/healthz", **{"x-padding": "x" * 12_000}))
            status, _, body = await read_one_response(reader)
            assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        writer.close()


@pytest.mark.slow
async def test_a_connection_that_does_not_finish_its_head_in_time_is_closed(
    database_url: str, registry: JobTypeRegistry
) -> None:
    async with limited_api(database_url, registry, api_header_timeout_seconds=1.0) as api:
        silent_reader, silent = await open_raw(api.url)
        slow_reader, slow = await open_raw(api.url)
        slow.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\n")  # and never the rest
        started = time.monotonic()
        assert await asyncio.wait_for(silent_reader.read(), 5) == b""  # closed, nothing said
        status, _, body = parse_response(await asyncio.wait_for(slow_reader.read(), 5))
        assert (status, orjson.loads(body)["error"]) == (408, "REQUEST_TIMEOUT")
        assert time.monotonic() - started < 4.0
        silent.close()
        slow.close()
        # The limit is on the head only: a long-poll longer than it is answered.
        async with api.client() as client:
            response = await client.post("/jobs", json={"type": "ECHO", "payload": {}})
            job_id = response.json()["jobId"]
            response = await client.get(f"/jobs/{job_id}", params={"wait": 1.5})
            assert (response.status_code, response.json()["status"]) == (200, "PENDING")


async def test_a_busy_server_does_not_time_out_a_request_it_has_not_read_yet(
    database_url: str, registry: JobTypeRegistry
) -> None:
    async with limited_api(database_url, registry, api_header_timeout_seconds=0.3) as api:
        reader, writer = await open_raw(api.url)
        await wait_for(lambda: len(api.server.server_state.connections) == 1)
        [connection] = api.server.server_state.connections
        # As when the process is too busy to read every socket (thousands of
        # clients at once): the request waits unread in the kernel past the timeout.
        connection.transport.pause_reading()
        writer.write(request_head())
        await asyncio.sleep(0.8)
        connection.transport.resume_reading()
        status, _, body = await asyncio.wait_for(read_one_response(reader), 5)
        writer.close()
        assert (status, orjson.loads(body)) == (200, {"status": "ok"})


async def test_an_idle_kept_alive_connection_is_closed(
    database_url: str, registry: JobTypeRegistry
) -> None:
    async with limited_api(database_url, registry, api_keep_alive_seconds=1) as api:
        reader, writer = await open_raw(api.url)
        writer.write(request_head())
        assert (await read_one_response(reader))[0] == 200
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


@pytest.mark.slow
async def test_connections_beyond_the_limit_get_503_and_the_open_ones_are_served(
    database_url: str, registry: JobTypeRegistry
) -> None:
    async with limited_api(database_url, registry, api_max_connections=20) as api:
        held = [await open_raw(api.url) for _ in range(20)]
        await wait_for(lambda: len(api.server.server_state.connections) == 20)
        reader, writer = await open_raw(api.url)
        writer.write(request_head())
        status, headers, body = parse_response(await asyncio.wait_for(reader.read(), 5))
        writer.close()
        assert (status, orjson.loads(body)["error"]) == (503, "TOO_MANY_CONNECTIONS")
        assert headers["retry-after"] == "1"
        for held_reader, held_writer in held[:5]:
            held_writer.write(request_head())
            assert (await read_one_response(held_reader))[0] == 200
        for _, held_writer in held:
            held_writer.close()
        await wait_for(lambda: len(api.server.server_state.connections) == 0)
        async with api.client() as client:
            assert (await client.get("/healthz")).status_code == 200


# ---------------------------------------------------------------- `easyclaw api` process


def peak_memory_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.slow  # starts an `easyclaw api` process
async def test_megabytes_of_headers_are_refused_before_they_are_read(
    settings: Settings, tmp_path: Path
) -> None:
    with api_process(settings, tmp_path / "api.log") as (url, pid):
        before = peak_memory_bytes(pid)

        async def send_huge_user_id() -> int:
            reader, writer = await open_raw(url)
            writer.write(request_head("/jobs", **{"x-user-id": "u" * 8_000_000}))
            try:
                raw = await asyncio.wait_for(reader.read(), 20)
            finally:
                writer.close()
            return parse_response(raw)[0]

        statuses = await asyncio.gather(*(send_huge_user_id() for _ in range(20)))
        grown = peak_memory_bytes(pid) - before
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
    assert statuses == [431] * 20
    # 20 heads of 8 MB held at once would be 160 MB at the very least.
    assert grown < 40_000_000, f"peak memory grew by {grown / 1e6:.0f} MB"
