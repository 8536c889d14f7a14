"""Tell Kubernetes which worker pods are cheap to remove on scale-in.

When KEDA lowers the replica count, the ReplicaSet deletes the pods with the
lowest ``controller.kubernetes.io/pod-deletion-cost`` first. A worker keeps
that annotation on its own pod at one of two values: ``IDLE_COST`` while it
holds no job, ``BUSY_COST`` while it holds any. Idle workers go first, busy
ones stay and finish their work. Two values rather than the number of held
jobs: a busy worker's count changes with every job, and every change would
be a patch (an API-server write and a watch event for every controller
watching pods); idle/busy changes only when a worker runs dry or picks up work.

The pod patches itself through the Kubernetes API with its service-account
token (RBAC: patch pods in its own namespace; the chart's
ValidatingAdmissionPolicy narrows that to its own pod and this annotation).
Only changes are sent, and a failed patch is logged, never fatal: the cost is
a hint to the scheduler, not part of running jobs.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.kubernetes import KubernetesApiError, KubernetesClient

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
IDLE_COST = 0
BUSY_COST = 1000
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CHECK_INTERVAL_SECONDS = 0.5

log = EventLogger("easyclaw.worker.pod_deletion_cost")


class NotInCluster(RuntimeError):
    """No Kubernetes API to talk to (no service host or no service-account token)."""


@dataclass(frozen=True)
class KubernetesTarget:
    """Where this pod is and how to reach the API server."""

    api_url: str
    namespace: str
    pod_name: str
    token_path: Path | None = None
    ca_path: Path | None = None

    @classmethod
    def in_cluster(cls, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubernetesTarget:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = service_account_dir / "token"
        if not host or not token.exists():
            raise NotInCluster(
                "EASYCLAW_WORKER_POD_DELETION_COST needs the Kubernetes API: "
                "KUBERNETES_SERVICE_HOST and a mounted service-account token"
            )
        namespace_file = service_account_dir / "namespace"
        namespace = os.environ.get("POD_NAMESPACE") or (
            namespace_file.read_text().strip() if namespace_file.exists() else ""
        )
        if not namespace:
            raise NotInCluster("POD_NAMESPACE is unset and no service-account namespace file")
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return cls(
            api_url=f"https://{host}:{port}",
            namespace=namespace,
            pod_name=os.environ.get("POD_NAME") or socket.gethostname(),
            token_path=token,
            ca_path=service_account_dir / "ca.crt",
        )


def cost_of(held_jobs: int) -> int:
    """The deletion cost of a worker holding this many jobs: idle or busy."""
    return BUSY_COST if held_jobs > 0 else IDLE_COST


class PodDeletionCost:
    """Keeps this pod's deletion cost at idle or busy, as its worker is."""

    def __init__(self, target: KubernetesTarget, *, timeout: float = 5.0) -> None:
        self.target = target
        self.last_sent: int | None = None
        self._client = KubernetesClient.from_service_account(
            target.api_url, token_path=target.token_path, ca_path=target.ca_path, timeout=timeout
        )

    @property
    def pod_path(self) -> str:
        return f"/api/v1/namespaces/{self.target.namespace}/pods/{self.target.pod_name}"

    async def set(self, cost: int) -> bool:
        """Patch the annotation unless it already has this value; False if the patch failed."""
        if cost == self.last_sent:
            return True
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        try:
            patched = await self._client.merge_patch(self.pod_path, body)
            error = "" if patched else "HTTP 404 or 409: the pod is gone or was replaced"
        except (KubernetesApiError, OSError) as failure:
            patched, error = False, str(failure)
        if not patched:
            log.warning(
                "worker.pod_deletion_cost_failed",
                pod=self.target.pod_name,
                cost=cost,
                error=error,
            )
            return False
        self.last_sent = cost
        log.debug("worker.pod_deletion_cost_set", pod=self.target.pod_name, cost=cost)
        return True

    async def follow(
        self, held_jobs: Callable[[], int], interval: float = CHECK_INTERVAL_SECONDS
    ) -> None:
        """Until cancelled: send the cost whenever the worker turns idle or busy."""
        while True:
            await self.set(cost_of(held_jobs()))
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self._client.aclose()
