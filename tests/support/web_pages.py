"""A local web server with real pages for the RESEARCH tests.

A threaded ``http.server`` on 127.0.0.1 answers a fixed set of paths: HTML
and plain-text pages, redirects, errors, a slow page, oversized pages (with
and without Content-Length) and non-text content.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>  Octopus   intelligence &amp; play </title>
  <style>body { color: red; }</style>
  <script>var tracking = "do not read me";</script>
</head>
<body>
  <nav><a href="/">Home</a></nav>
  <article>
    <h1>Octopuses are clever</h1>
    <p>They open jars,   solve mazes and <em>recognise</em> people.</p>
    <p>Each arm has its own&nbsp;neurons &mdash; about two thirds of them.</p>
    <noscript>Enable JavaScript</noscript>
    <ul><li>Eight arms</li><li>Three hearts</li></ul>
  </article>
</body>
</html>
"""

PLAIN_TEXT = "Release notes\n\n  version 1.2:   faster   claims\n"
LATIN1_HTML = (
    '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'
    "<body>cr\xe8me</body></html>"
)
BIG_BYTES = 64 * 1024

ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/article.html": (200, {"Content-Type": "text/html; charset=utf-8"}, ARTICLE_HTML.encode()),
    "/notes.txt": (200, {"Content-Type": "text/plain"}, PLAIN_TEXT.encode()),
    "/latin1.html": (200, {"Content-Type": "text/html"}, LATIN1_HTML.encode("latin-1")),
    "/redirect-1": (302, {"Location": "/redirect-2"}, b""),
    "/redirect-2": (301, {"Location": "/article.html"}, b""),
    "/loop": (302, {"Location": "/loop"}, b""),
    "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
    "/image.png": (200, {"Content-Type": "image/png"}, b"\x89PNG\r\n\x1a\n" + b"0" * 100),
    "/data.json": (200, {"Content-Type": "application/json"}, b'{"a": 1}'),
    "/big.html": (200, {"Content-Type": "text/html"}, b"<p>" + b"x" * BIG_BYTES + b"</p>"),
    "/missing": (404, {"Content-Type": "text/html"}, b"<h1>Not here</h1>"),
    "/unavailable": (503, {"Content-Type": "text/html", "Retry-After": "7"}, b"busy"),
}
STREAMED_BIG = "/big-streamed.html"  # no Content-Length: the body ends when the connection does
SLOW = "/slow.html"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        if self.path == STREAMED_BIG:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(BIG_BYTES // 1024 + 1):
                self.wfile.write(b"y" * 1024)
            return
        if self.path == SLOW:
            self.server.release.wait(10)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<title>late</title>")
            return
        status, headers, body = ROUTES.get(self.path, (404, {}, b"no such page"))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str]]
    release: threading.Event


@dataclass
class WebServer:
    url: str
    port: int
    server: _Server

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(path, Host header) of every request received."""
        return self.server.requests


@contextmanager
def web_server() -> Iterator[WebServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.requests = []
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield WebServer(url=f"http://127.0.0.1:{port}", port=port, server=server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


async def search(query: str, *, limit: int, settings: object) -> list[dict[str, str]]:
    """A search provider: EASYCLAW_RESEARCH_SEARCH_PROVIDER=tests.support.web_pages:search."""
    return [
        {"title": f"Result {n} for {query}", "url": f"https://example.org/{n}", "snippet": "..."}
        for n in range(1, 10)
    ][:limit]
