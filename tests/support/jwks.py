"""An issuer's JWKS endpoint on localhost, and the key whose public half it publishes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KID = "key-1"


@dataclass
class Jwks:
    url: str
    key: rsa.RSAPrivateKey
    requests: list[str] = field(default_factory=list)


@contextmanager
def serve_jwks() -> Iterator[Jwks]:
    """A real HTTP server answering ``/.well-known/jwks.json`` with one RS256 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    document = json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]})
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            if self.path != "/.well-known/jwks.json":
                self.send_error(404)
                return
            body = document.encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Jwks(
            url=f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json",
            key=key,
            requests=served,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
