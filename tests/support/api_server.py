"""The real API app behind a real uvicorn server: in this process on a free localhost
port (``serve_api``), or as an `easyclaw api` process of its own (``api_process``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from easyclaw.api.app import create_app
from easyclaw.api.server import server_config
from easyclaw.cli.settings import Settings
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.tls import client_tls_context
from tests.support.ports import free_port
from tests.support.processes import process_env


@dataclass
class ApiServer:
    url: str
    settings: Settings
    server: uvicorn.Server

    def client(self, user_id: str | None = "test-user-id", **kwargs: Any) -> httpx.AsyncClient:
        headers = {"x-user-id": user_id} if user_id else {}
        headers.update(kwargs.pop("headers", {}))
        # The test server speaks plain HTTP, but every httpx client would build a
        # TLS context and load the CA bundle (~50 ms); the process's one spares that.
        kwargs.setdefault("verify", client_tls_context())
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    @property
    def metrics_url(self) -> str:
        """The separate /metrics listener (``EASYCLAW_API_METRICS_PORT``)."""
        assert self.settings.api_metrics_port, "this server runs without a metrics port"
        return f"http://127.0.0.1:{self.settings.api_metrics_port}/metrics"


class PromptServer(uvicorn.Server):
    """A uvicorn server that stops the moment it is asked to.

    uvicorn's main loop looks at ``should_exit`` every 0.1 s: each API test
    spent 0.05-0.1 s of its teardown waiting for that tick. This one waits on an
    event instead, and still ticks once a second (the Date header).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):
            ticks = (ticks + 10) % 864000  # a tick that is a multiple of 10 refreshes the Date
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_requested.wait()


@asynccontextmanager
async def serve_api(
    settings: Settings, registry: JobTypeRegistry | None = None
) -> AsyncIterator[ApiServer]:
    """Serve ``create_app(settings, registry)`` until the block ends."""
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections
    # (otherwise each response waits ~40 ms for a delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # The configuration `easyclaw api` serves with (its connection limits included).
    config = server_config(
        settings, create_app(settings, registry), lifespan="on", timeout_graceful_shutdown=1
    )
    server = PromptServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield ApiServer(url=f"http://127.0.0.1:{port}", settings=settings, server=server)
    finally:
        server.request_exit()
        await task
        sock.close()


@contextmanager
def api_process(settings: Settings, log_path: Path) -> Iterator[tuple[str, int]]:
    """`easyclaw api` as its own process (its peak memory is its own)."""
    port = free_port()
    env = process_env(settings, EASYCLAW_API_PORT=str(port))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "easyclaw.cli.main", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1, verify=client_tls_context()) as http:
            while True:
                try:
                    if http.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)
