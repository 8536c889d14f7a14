"""The two Kubernetes API calls the operator makes itself.

kopf patches a resource only when a handler returns, and has no public way
to delete one. A job's follower must patch the status whenever the job row
changes (many times in one long-running daemon) and delete the resource when
its TTL runs out, so it uses the shared client (easyclaw.core.kubernetes),
signed in with the same credentials kopf got from the operator's login handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import kopf

from easyclaw.core.kubernetes import KubernetesApiError, KubernetesClient
from easyclaw.operator.resource import GROUP, PLURAL, VERSION


class KubeClient:
    def __init__(self, *, request_timeout: float = 30.0) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._client: KubernetesClient | None = None
        self._stale_client: KubernetesClient | None = None
        self._timeout = request_timeout

    def use(self, info: kopf.ConnectionInfo) -> None:
        """Sign later requests in with these credentials (called by each kopf login)."""
        if info != self._info:
            self._info = info
            self._stale_client, self._client = self._client, None

    async def _current_client(self) -> KubernetesClient:
        if self._info is None:
            raise KubernetesApiError("not signed in to the Kubernetes API yet")
        if self._stale_client is not None:
            stale, self._stale_client = self._stale_client, None
            await stale.aclose()
        if self._client is None:
            self._client = KubernetesClient.from_connection(self._info, timeout=self._timeout)
        return self._client

    @staticmethod
    def _path(namespace: str, name: str, subresource: str = "") -> str:
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}"
            f"/{PLURAL}/{quote(name, safe='')}"
        )
        return path + (f"/{subresource}" if subresource else "")

    async def patch_status(
        self, *, namespace: str, name: str, uid: str, status: dict[str, Any]
    ) -> bool:
        """Merge-patch ``.status``; False if the resource is gone or was replaced.

        ``metadata.uid`` in the patch is a precondition: a new resource with
        the same name is never given another job's status.
        """
        client = await self._current_client()
        body = {"metadata": {"uid": uid}, "status": status}
        return await client.merge_patch(self._path(namespace, name, "status"), body)

    async def delete(self, *, namespace: str, name: str, uid: str) -> bool:
        """Delete the resource (its finalizer still runs); False if it is already gone."""
        client = await self._current_client()
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        return await client.delete(self._path(namespace, name), body)

    async def close(self) -> None:
        for client in (self._client, self._stale_client):
            if client is not None:
                await client.aclose()
        self._client = self._stale_client = None
