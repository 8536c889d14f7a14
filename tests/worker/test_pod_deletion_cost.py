"""Workers mark their own pod cheap to delete when idle, dear when busy.

Against kmock's Kubernetes API emulator (a real HTTP server speaking the
Kubernetes API): a running worker's pod annotation follows its held jobs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import JobStatus
from easyclaw.worker.main import pod_deletion_cost
from easyclaw.worker.pod_deletion_cost import (
    ANNOTATION,
    BUSY_COST,
    IDLE_COST,
    KubernetesTarget,
    NotInCluster,
    PodDeletionCost,
    cost_of,
)
from tests.support.waiting import wait_for
from tests.worker.helpers import enqueue, running_worker, wait_status

NAMESPACE = "easyclaw"
POD = "ec-easyclaw-worker-7d9f-abcde"


@pytest.fixture
def pod(kmock: Any) -> Any:
    kmock.objects["v1/pods", NAMESPACE, POD] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE, "labels": {"app": "worker"}},
    }
    return kmock


def annotation(kmock: Any) -> str | None:
    metadata = kmock.objects["v1/pods", NAMESPACE, POD]["metadata"]
    value: str | None = metadata.get("annotations", {}).get(ANNOTATION)
    return value


def patches(kmock: Any) -> list[Any]:
    return [r for r in kmock if str(r.method.value).upper() == "PATCH"]


async def test_annotation_is_idle_or_busy_and_patched_only_when_that_changes(
    pod: Any, settings: Settings, pool: AsyncPool, conn: psycopg.AsyncConnection[Any]
) -> None:
    cost = PodDeletionCost(
        KubernetesTarget(api_url=str(pod.url), namespace=NAMESPACE, pod_name=POD)
    )
    held: list[int] = []

    def busy() -> int:
        held.append(worker.busy)
        return worker.busy

    async with running_worker(settings, pool) as worker:
        follower = asyncio.create_task(cost.follow(busy, interval=0.02))
        try:
            await wait_for(lambda: annotation(pod) == str(IDLE_COST), timeout=5)
            # Jobs of different lengths: the worker holds 3, then 2, then 1 of them.
            jobs = [
                await enqueue(conn, "SLEEP", {"seconds": seconds}) for seconds in (0.6, 0.9, 1.2)
            ]
            await wait_for(lambda: annotation(pod) == str(BUSY_COST), timeout=5)
            for job in jobs:
                await wait_status(conn, job.id, JobStatus.COMPLETED)
            await wait_for(lambda: annotation(pod) == str(IDLE_COST), timeout=5)
        finally:
            follower.cancel()
            await cost.aclose()
    assert {3, 2, 1} <= set(held), "the held count went through 3, 2 and 1"
    # Yet only idle, busy, idle were sent.
    sent = [r.data["metadata"]["annotations"][ANNOTATION] for r in patches(pod)]
    assert sent == [str(IDLE_COST), str(BUSY_COST), str(IDLE_COST)]
    assert pod.objects["v1/pods", NAMESPACE, POD]["metadata"]["labels"] == {"app": "worker"}


def test_cost_is_quantised_to_two_values() -> None:
    assert cost_of(0) == IDLE_COST
    assert {cost_of(n) for n in (1, 2, 16, 10_000)} == {BUSY_COST}
    assert IDLE_COST < BUSY_COST


async def test_patch_is_a_merge_patch_of_the_annotation_only(pod: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("token-1\n")
    target = KubernetesTarget(
        api_url=str(pod.url), namespace=NAMESPACE, pod_name=POD, token_path=token
    )
    cost = PodDeletionCost(target)
    try:
        assert await cost.set(5)
        token.write_text("token-2\n")  # projected tokens rotate
        assert await cost.set(5)  # unchanged: nothing sent
        assert await cost.set(0)
    finally:
        await cost.aclose()
    sent = patches(pod)
    assert len(sent) == 2
    assert sent[0].headers["Content-Type"] == "application/merge-patch+json"
    assert sent[0].data == {"metadata": {"annotations": {ANNOTATION: "5"}}}
    assert [r.headers["Authorization"] for r in sent] == ["Bearer token-1", "Bearer token-2"]
    assert annotation(pod) == "0"


async def test_failures_are_logged_not_fatal(kmock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="easyclaw")
    missing = KubernetesTarget(api_url=str(kmock.url), namespace=NAMESPACE, pod_name="gone")
    cost = PodDeletionCost(missing)
    try:
        assert await cost.set(2) is False
        assert cost.last_sent is None  # retried at the next change check
    finally:
        await cost.aclose()
    assert any(r.getMessage() == "worker.pod_deletion_cost_failed" for r in caplog.records)


def test_in_cluster_target_from_the_service_account_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("t")
    (tmp_path / "namespace").write_text("from-file\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("POD_NAME", "worker-abc")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    target = KubernetesTarget.in_cluster(tmp_path)
    assert target.api_url == "https://10.96.0.1:443"
    assert (target.namespace, target.pod_name) == ("from-file", "worker-abc")
    monkeypatch.setenv("POD_NAMESPACE", "from-env")
    assert KubernetesTarget.in_cluster(tmp_path).namespace == "from-env"


def test_outside_a_cluster_the_worker_runs_without_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    caplog.set_level(logging.WARNING, logger="easyclaw")
    with pytest.raises(NotInCluster):
        KubernetesTarget.in_cluster()
    enabled = settings.model_copy(update={"worker_pod_deletion_cost": True})
    assert pod_deletion_cost(enabled) is None
    assert any(r.getMessage() == "worker.pod_deletion_cost_disabled" for r in caplog.records)
    assert pod_deletion_cost(settings) is None  # off by default
