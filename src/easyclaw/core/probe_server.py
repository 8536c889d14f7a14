"""A tiny HTTP server for Kubernetes probes in processes without a web framework.

It serves fixed paths over asyncio streams, so a probe exercises the same event
loop that does the work. What each path answers is the caller's ``respond``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Response = tuple[str, str, bytes]
"""(status line, content type, body), e.g. ``("200 OK", "application/json", b"{}")``."""


class ProbeServer:
    """``respond(path)`` returns the response, or an awaitable of it (e.g. a query).

    ``reuse_port`` lets several processes of one program (``easyclaw api
    --workers N``) listen on the same port; the kernel spreads connections.
    """

    def __init__(
        self,
        host: str,
        port: int,
        respond: Callable[[str], Response | Awaitable[Response]],
        *,
        reuse_port: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._respond = respond
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._host, self._port, reuse_port=self._reuse_port or None
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            answer = self._respond(path)
            if inspect.isawaitable(answer):
                answer = await answer
            status, content_type, body = answer
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
