"""``easyclaw api``: serve the REST API with uvicorn, within connection limits.

uvicorn's fast HTTP/1.1 protocol (httptools) reads a request's head, however
long it is, for as long as the client takes, and accepts any number of
connections. A client could hold thousands of connections that never finish
their headers (until the process runs out of file descriptors), or send
megabytes of headers on each (until it runs out of memory). The protocol here
adds the missing limits:

- the request line and headers together may hold ``EASYCLAW_API_MAX_HEADER_BYTES``;
  beyond that the connection gets ``431`` and is closed before more is read;
- they must arrive within ``EASYCLAW_API_HEADER_TIMEOUT_SECONDS`` of the connection
  (or, on a kept-alive connection, of the next request's first byte), else the
  connection is closed (with ``408`` if part of a request came);
- at most ``EASYCLAW_API_MAX_CONNECTIONS`` connections are open at once (fewer if
  the process may not open that many files); a connection beyond gets ``503``
  and is closed, while the open ones are served as before;
- an idle kept-alive connection is closed after ``EASYCLAW_API_KEEP_ALIVE_SECONDS``
  (uvicorn's own ``timeout_keep_alive``).

``server_config`` builds the one uvicorn configuration that ``easyclaw api`` (and
so ``easyclaw up``) and the tests serve with.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import resource
import sys
from dataclasses import dataclass
from termios import FIONREAD
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from easyclaw.api.app import create_app
from easyclaw.api.settings import ApiProcessSettings
from easyclaw.core.db import check_database
from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.core.process import tune_garbage_collector

log = EventLogger("easyclaw.api")

# File descriptors kept free for everything that is not a client connection:
# the database pool, the listener, logs, the JWKS client.
RESERVED_FILE_DESCRIPTORS = 256
# A head timer that expires while the client's bytes wait unread in the kernel
# (the process was busy, not the client slow) is restarted at most this often.
MAX_HEAD_EXTENSIONS = 3
# How long a refused connection is drained before it is closed.
LINGER_SECONDS = 1.0
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


@dataclass(frozen=True, kw_only=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: ApiProcessSettings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.api_max_header_bytes,
            header_timeout_seconds=settings.api_header_timeout_seconds,
            max_connections=settings.api_max_connections,
        )


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the limits the protocol enforces."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedHttpToolsProtocol, **kwargs)
        self.limits = limits


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads and connection count."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, ServerConfig), "serve with easyclaw.api.server.ServerConfig"
        self._limits = config.limits
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._message_begun = False
        self._head_extensions = 0
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(
                503,
                "TOO_MANY_CONNECTIONS",
                "the server has too many open connections; retry shortly",
                extra_headers=[(b"retry-after", b"1")],
                linger=False,  # keep no more file descriptors than the limit
            )
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if not self._reading_head:
            super().data_received(data)
            return
        room = self._limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what the head may still use; if the head is not complete
        # within it, the rest is never read (and never held in memory).
        self._head_bytes += room
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._head_incomplete():
            self._refuse(
                431,
                "HEADERS_TOO_LARGE",
                f"the request line and headers are larger than "
                f"{self._limits.max_header_bytes} bytes",
            )
            return
        super().data_received(data[room:])

    def _head_incomplete(self) -> bool:
        # A method, so that type checkers do not assume the parser's callbacks
        # (run inside data_received) left the flag as it was.
        return self._reading_head

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._message_begun = True
        self._head_extensions = 0
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        # The next request's head is counted from zero (bytes fed while a body
        # is read are not counted: at most one read of the socket).
        self._reading_head = False
        self._message_begun = False
        self._head_bytes = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._limits.header_timeout_seconds, self._head_timed_out
            )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._unread_bytes() and self._head_extensions < MAX_HEAD_EXTENSIONS:
            # The client did send; this busy process has not read it yet (a
            # timer can fire before the socket's pending data is handled).
            self._head_extensions += 1
            self._start_head_timer()
            return
        if not self._message_begun:
            self.transport.close()  # nothing asked, nothing to answer
            return
        self._refuse(
            408,
            "REQUEST_TIMEOUT",
            f"the request line and headers did not arrive within "
            f"{self._limits.header_timeout_seconds:g} s",
        )

    def _unread_bytes(self) -> int:
        """Bytes the kernel holds for this connection that were not read yet."""
        try:
            pending = array.array("i", [0])
            fcntl.ioctl(self.transport.get_extra_info("socket").fileno(), FIONREAD, pending)
        except (AttributeError, OSError, ValueError):
            return 0
        return pending[0]

    def _refuse(
        self,
        status: int,
        code: str,
        message: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        linger: bool = True,
    ) -> None:
        """Answer with a JSON error and close the connection, parsing nothing more.

        With ``linger``, the connection is first half-closed and what the client
        still sends is read and dropped for a moment: closing a socket with unread
        data resets it, and the client might lose the answer."""
        self._reading_head = False
        self._stop_head_timer()
        log.warning("api.connection_refused", status=status, reason=code)
        body = orjson.dumps({"error": code, "message": message})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *(extra_headers or []),
        ]
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[status] + head + b"\r\n" + body)
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self._discarding = True
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def usable_connection_limit(wanted: int) -> int:
    """``wanted``, or less if the process may not open that many files.

    Raises the soft limit on open files to the hard limit first, as far as
    needed (an unprivileged process may).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FILE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    return max(1, soft - RESERVED_FILE_DESCRIPTORS)


def server_config(settings: ApiProcessSettings, app: Any, **overrides: Any) -> ServerConfig:
    """The uvicorn configuration of the API; ``app`` is the app or its factory path."""
    limits = ConnectionLimits.from_settings(settings)
    usable = usable_connection_limit(limits.max_connections)
    if usable < limits.max_connections:
        log.warning(
            "api.connection_limit_lowered",
            configured=limits.max_connections,
            limit=usable,
            reason="the process may not open that many files (ulimit -n)",
        )
        limits = ConnectionLimits(
            max_header_bytes=limits.max_header_bytes,
            header_timeout_seconds=limits.header_timeout_seconds,
            max_connections=usable,
        )
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "loop": "uvloop",
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.api_keep_alive_seconds,
        "server_header": False,
        # Connections the kernel queues until the process accepts them (it caps
        # this at net.core.somaxconn); a burst of thousands of clients fits.
        "backlog": 4096,
    }
    options.update(overrides)
    return ServerConfig(app, limits=limits, **options)


def main(settings: ApiProcessSettings | None = None, *, workers: int = 1) -> None:
    """Serve until SIGTERM/SIGINT. With several workers, each process builds its
    app (and its own pool) from the environment."""
    settings = settings or ApiProcessSettings()
    configure_logging(settings.log_level, repeat_window_seconds=settings.log_repeat_window_seconds)
    # A DATABASE_URL that cannot work stops the API here, before it serves
    # (an unreachable server does not: /readyz says so until it is back).
    asyncio.run(check_database(settings, application_name="easyclaw-api"))
    tune_garbage_collector()
    if workers == 1:
        server = uvicorn.Server(server_config(settings, create_app(settings)))
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    config = server_config(settings, "easyclaw.api.app:create_app", factory=True, workers=workers)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
