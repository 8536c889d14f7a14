"""The two Kubernetes API calls the operator makes itself.

kopf patches a resource only when a handler returns, and has no public way
to delete one. A job's follower must patch the status whenever the job row
changes (many times in one long-running daemon) and delete the resource when
its TTL runs out, so it uses this small client. It signs in with the same
credentials kopf got from the operator's login handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from easyclaw.operator.resource import GROUP, PLURAL, VERSION


class KubeApiError(RuntimeError):
    """The API server answered with an unexpected status."""


class KubeClient:
    def __init__(self, *, request_timeout: float = 30.0) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stale_session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    def use(self, info: kopf.ConnectionInfo) -> None:
        """Sign later requests in with these credentials (called by each kopf login)."""
        if info != self._info:
            self._info = info
            self._stale_session, self._session = self._session, None

    async def _current_session(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        if self._info is None:
            raise KubeApiError("not signed in to the Kubernetes API yet")
        if self._stale_session is not None:
            stale, self._stale_session = self._stale_session, None
            await stale.close()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._info.as_http_headers(),
                connector=aiohttp.TCPConnector(ssl=self._info.as_ssl_context()),
                timeout=self._timeout,
            )
        return self._session, self._info

    def _url(self, server: str, namespace: str, name: str, subresource: str = "") -> str:
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}"
            f"/{PLURAL}/{quote(name, safe='')}"
        )
        return server.rstrip("/") + path + (f"/{subresource}" if subresource else "")

    async def patch_status(
        self, *, namespace: str, name: str, uid: str, status: dict[str, Any]
    ) -> bool:
        """Merge-patch ``.status``; False if the resource is gone or was replaced.

        ``metadata.uid`` in the patch is a precondition: a new resource with
        the same name is never given another job's status.
        """
        session, info = await self._current_session()
        body = {"metadata": {"uid": uid}, "status": status}
        async with session.patch(
            self._url(info.server, namespace, name, "status"),
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            return await self._accept(response, "patch the status of", namespace, name)

    async def delete(self, *, namespace: str, name: str, uid: str) -> bool:
        """Delete the resource (its finalizer still runs); False if it is already gone."""
        session, info = await self._current_session()
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        async with session.delete(self._url(info.server, namespace, name), json=body) as response:
            return await self._accept(response, "delete", namespace, name)

    @staticmethod
    async def _accept(
        response: aiohttp.ClientResponse, action: str, namespace: str, name: str
    ) -> bool:
        if response.status < 300:
            return True
        if response.status in (404, 409):  # gone, or replaced by a namesake (uid precondition)
            return False
        detail = (await response.text())[:500]
        raise KubeApiError(
            f"could not {action} {PLURAL}/{name} in {namespace}: HTTP {response.status} {detail}"
        )

    async def close(self) -> None:
        for session in (self._session, self._stale_session):
            if session is not None:
                await session.close()
        self._session = self._stale_session = None
