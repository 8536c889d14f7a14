"""One TLS client context per process for the HTTP clients EasyClaw makes.

An ``httpx`` client builds its own verification context by default, and each
one loads the CA bundle again (about 50 ms of CPU). The API, the research
fetcher (one client per fetched page) and the OpenAI provider share this one
instead; it is what httpx would have built.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def client_tls_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """httpx's default context (``verify=True``), built once per process.

    ``trust_env`` as for httpx: whether SSL_CERT_FILE / SSL_CERT_DIR choose the CA
    bundle instead of certifi's."""
    return httpx.create_ssl_context(trust_env=trust_env)
