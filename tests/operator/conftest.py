"""The operator end to end: real kopf against kmock's in-memory Kubernetes API,
a real PostgreSQL, and (where a job must run) a real in-process worker.

kmock limits worth knowing: it assigns no ``uid`` (``create_resource`` sets
one, as the API server would), has no admission or schema validation, and a
watch replays every existing object as ADDED when it (re)connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import psycopg
import pytest
from kmock import KubernetesEmulator, RawHandler, ResourceInfo
from pydantic import BaseModel

from easyclaw.cli.settings import Settings
from easyclaw.core.jobtypes import JobContext, JobType, JobTypeRegistry, load_registry
from easyclaw.operator.main import run_operator
from easyclaw.operator.resource import GROUP, KIND, PLURAL, VERSION
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

NAMESPACE = "easyclaw-jobs"
RESOURCE = f"{GROUP}/{VERSION}/{PLURAL}"
COLLECTION = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


class GreetPayload(BaseModel):
    name: str


async def run_greet(ctx: JobContext) -> dict[str, Any]:
    return {"greeting": f"hello, {ctx.payload['name']}"}


GREET = JobType(name="GREET", handler=run_greet, payload_model=GreetPayload)
"""A type with a payload model, to show payloads are validated before enqueueing."""


@pytest.fixture
def kube(kmock: RawHandler) -> KubernetesEmulator:
    """kmock serving the built-in resources and the EasyClawJob CRD's resource."""
    assert isinstance(kmock, KubernetesEmulator)
    kmock.resources.load_bundled()
    kmock.resources[RESOURCE] = ResourceInfo(
        kind=KIND,
        singular="easyclawjob",
        namespaced=True,
        shortnames={"ecj"},
        verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
        subresources={"status"},
    )
    return kmock


@pytest.fixture
def operator_settings(database_url: str) -> Settings:
    # A long resync: status changes must arrive through NOTIFY, not the timer.
    return make_settings(
        database_url,
        operator_namespaces=[NAMESPACE],
        operator_health_port=0,
        operator_resync_seconds=60.0,
    )


@pytest.fixture
def operator_registry(operator_settings: Settings) -> JobTypeRegistry:
    registry = load_registry(operator_settings)
    registry.register(GREET)
    return registry


@dataclass
class OperatorUnderTest:
    """Start/stop the operator and act on EasyClawJobs as kubectl would."""

    kube: KubernetesEmulator
    http: aiohttp.ClientSession
    """The test's own client, a new connection per request: when kopf.operator() exits
    it cancels every task started while it ran, kmock's connection handlers included,
    so a kept-alive connection would hang after an operator restart."""
    settings: Settings
    registry: JobTypeRegistry
    task: asyncio.Task[None] | None = None

    async def start(self, settings: Settings | None = None) -> None:
        assert self.task is None, "already running"
        ready = asyncio.Event()
        connection = kopf.ConnectionInfo(server=str(self.kube.url).rstrip("/"), insecure=True)
        self.task = asyncio.create_task(
            run_operator(
                settings or self.settings,
                registry=self.registry,
                connection=connection,
                ready_flag=ready,
            ),
            name="operator",
        )
        ready_wait = asyncio.create_task(ready.wait())
        await asyncio.wait([ready_wait, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready_wait.cancel()
            self.task.result()

    async def stop(self) -> None:
        if self.task is None:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.task = None

    async def create(self, name: str, spec: dict[str, Any]) -> str:
        """Create an EasyClawJob; returns the uid (set here, since kmock assigns none)."""
        uid = str(uuid.uuid4())
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            # kmock assigns neither; kopf's JSON patches test resourceVersion.
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "resourceVersion": "1"},
            "spec": spec,
        }
        response = await self.http.post(COLLECTION, json=body)
        assert response.status < 300, await response.text()
        return uid

    async def get(self, name: str) -> dict[str, Any] | None:
        response = await self.http.get(f"{COLLECTION}/{name}")
        if response.status == 404:
            return None
        assert response.status == 200, await response.text()
        found: dict[str, Any] = await response.json()
        return found

    async def patch(self, name: str, patch: dict[str, Any]) -> None:
        response = await self.http.patch(
            f"{COLLECTION}/{name}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status == 200, await response.text()

    async def delete(self, name: str) -> None:
        response = await self.http.delete(f"{COLLECTION}/{name}")
        assert response.status == 200, await response.text()

    async def wait_object(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The object once ``check(object)`` holds (polled with a deadline)."""
        last: dict[str, Any] | None = None

        async def reached() -> dict[str, Any] | None:
            nonlocal last
            last = await self.get(name)
            return last if last is not None and check(last) else None

        try:
            found: dict[str, Any] = await wait_for(reached, timeout=timeout, interval=0.05)
        except TimeoutError:
            raise AssertionError(f"{name} is {last}: condition unmet in {timeout} s") from None
        return found

    async def wait_status(
        self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The status once ``check(status)`` holds."""
        found = await self.wait_object(name, lambda o: check(o.get("status") or {}), timeout)
        status: dict[str, Any] = found["status"]
        return status

    async def wait_phase(self, name: str, *phases: str, timeout: float = 10.0) -> dict[str, Any]:
        return await self.wait_status(name, lambda s: s.get("phase") in phases, timeout)

    async def wait_gone(self, name: str, timeout: float = 10.0) -> None:
        async def gone() -> bool:
            return await self.get(name) is None

        await wait_for(gone, timeout=timeout, interval=0.05)

    async def events_about(self, name: str) -> list[dict[str, Any]]:
        """Events whose involvedObject (core/v1) or regarding (events.k8s.io) is ``name``."""
        found = []
        for path in (
            f"/api/v1/namespaces/{NAMESPACE}/events",
            f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events",
        ):
            response = await self.http.get(path)
            if response.status != 200:
                continue
            for event in (await response.json()).get("items", []):
                about = event.get("involvedObject") or event.get("regarding") or {}
                if about.get("name") == name:
                    found.append(event)
        return found


@pytest.fixture
async def operator(
    kube: KubernetesEmulator, operator_settings: Settings, operator_registry: JobTypeRegistry
) -> AsyncIterator[OperatorUnderTest]:
    async with aiohttp.ClientSession(
        base_url=str(kube.url), connector=aiohttp.TCPConnector(force_close=True)
    ) as http:
        running = OperatorUnderTest(
            kube=kube, http=http, settings=operator_settings, registry=operator_registry
        )
        await running.start()
        try:
            yield running
        finally:
            await running.stop()


async def job_rows(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        b"SELECT id, status, idempotency_key, user_id FROM jobs ORDER BY created_at"
    )
    return await cursor.fetchall()
