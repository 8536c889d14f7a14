"""A local OpenAI-compatible ``/v1/chat/completions`` server for tests.

It speaks the real wire format over real HTTP (a threaded ``http.server``), so
the provider's request building, status handling and response parsing are all
exercised. Tests script its answers (a 429, a 400, a reply that hangs until
released) and read back every request it received.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "test-model-2024-01-01"
PROMPT_TOKENS_PER_MESSAGE = 7
COMPLETION_TOKENS = 5


@dataclass
class Answer:
    """One scripted answer; ``None`` body means a normal completion."""

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    """If set, the server waits for it before answering (a slow or hung model)."""


@dataclass
class OpenAICompatibleServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)
    received: threading.Event = field(default_factory=threading.Event)
    connections: set[tuple[str, int]] = field(default_factory=set)
    """The client (address, port) of every TCP connection a request came on."""
    arrivals: list[float] = field(default_factory=list)
    """``time.time()`` when each request arrived, in the order of ``requests``
    (rate-limit tests compare them with the database's start times)."""

    def then(self, *answers: Answer) -> None:
        self.script.extend(answers)

    def release_all(self) -> None:
        """Let every held answer (answered or still scripted) go."""
        for answer in self._given + list(self.script):
            if answer.hold is not None:
                answer.hold.set()

    _given: list[Answer] = field(default_factory=list)


def completion(request: dict[str, Any]) -> dict[str, Any]:
    """A normal answer: echoes the last message; usage grows with the history."""
    messages = request["messages"]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"reply to: {messages[-1]['content']}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS_PER_MESSAGE * len(messages),
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS_PER_MESSAGE * len(messages) + COMPLETION_TOKENS,
        },
    }


@contextmanager
def openai_compatible_server() -> Iterator[OpenAICompatibleServer]:
    state: OpenAICompatibleServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real providers do

        def do_POST(self) -> None:
            arrived = time.time()
            state.connections.add(self.client_address)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length))
            state.requests.append(request)
            state.arrivals.append(arrived)
            state.authorizations.append(self.headers.get("authorization"))
            state.received.set()
            answer = state.script.popleft() if state.script else Answer()
            state._given.append(answer)
            if answer.hold is not None:
                answer.hold.wait(timeout=60)
            self._send(answer.status, answer.body or completion(request), answer.headers)

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] = {}) -> None:  # noqa: B006
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a killed worker)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = OpenAICompatibleServer(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release_all()
        server.shutdown()
        server.server_close()
