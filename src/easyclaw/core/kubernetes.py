"""The one small Kubernetes API client EasyClaw's processes use for their own calls.

Two callers, two ways of signing in, one client:

- a worker patches its own pod with the pod's service-account token (read
  again for every call: projected tokens rotate) and the cluster CA file;
- the operator patches and deletes its custom resources with the credentials
  kopf's login handler produced (a ``kopf.ConnectionInfo``: server, headers,
  SSL context).

Only the calls they need: ``merge_patch`` and ``delete`` of a path. Both answer
True when the API server accepted the call, False when the object is gone or a
precondition (``metadata.uid``) no longer holds (HTTP 404 or 409), and raise
``KubernetesApiError`` for any other status or when the server cannot be reached.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

MERGE_PATCH = "application/merge-patch+json"
GONE_OR_REPLACED = (404, 409)


class KubernetesApiError(RuntimeError):
    """The API server answered with an unexpected status, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectionInfo(Protocol):
    """What the client reads from a ``kopf.ConnectionInfo`` (kept out of the engine's imports)."""

    @property
    def server(self) -> str: ...

    def as_http_headers(self) -> dict[str, str]: ...

    def as_ssl_context(self) -> ssl.SSLContext: ...


class KubernetesClient:
    def __init__(
        self,
        server: str,
        *,
        headers: Mapping[str, str] | None = None,
        token_path: Path | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._token_path = token_path
        self._client = httpx.AsyncClient(
            base_url=self.server, headers=dict(headers or {}), verify=verify, timeout=timeout
        )

    @classmethod
    def from_service_account(
        cls,
        server: str,
        *,
        token_path: Path | None,
        ca_path: Path | None,
        timeout: float = 30.0,
    ) -> KubernetesClient:
        """Sign in with a (rotating) service-account token; trust the cluster CA file if present."""
        verify: ssl.SSLContext | bool = True
        if ca_path is not None and ca_path.exists():
            verify = ssl.create_default_context(cafile=str(ca_path))
        return cls(server, token_path=token_path, verify=verify, timeout=timeout)

    @classmethod
    def from_connection(cls, info: ConnectionInfo, *, timeout: float = 30.0) -> KubernetesClient:
        """Sign in with the credentials of a kopf login."""
        return cls(
            info.server,
            headers=info.as_http_headers(),
            verify=info.as_ssl_context(),
            timeout=timeout,
        )

    def _auth(self) -> dict[str, str]:
        if self._token_path is None:
            return {}
        # Projected tokens rotate: read it for every call.
        return {"Authorization": f"Bearer {self._token_path.read_text().strip()}"}

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> bool:
        """JSON merge-patch the object at ``path``; False if it is gone or was replaced."""
        headers = {**self._auth(), "Content-Type": MERGE_PATCH}
        return await self._send("PATCH", path, body, headers)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> bool:
        """Delete the object at ``path`` (``body``: DeleteOptions); False if already gone."""
        return await self._send("DELETE", path, body, self._auth())

    async def _send(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: dict[str, str]
    ) -> bool:
        try:
            response = await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as error:
            raise KubernetesApiError(
                f"{method} {path}: {type(error).__name__} {error}".rstrip()
            ) from error
        if response.is_success:
            return True
        if response.status_code in GONE_OR_REPLACED:
            return False
        raise KubernetesApiError(
            f"{method} {path}: HTTP {response.status_code} {response.text[:500]}".rstrip(),
            status=response.status_code,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
