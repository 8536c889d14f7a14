"""The shared Kubernetes client, against kmock (a real HTTP server speaking the
Kubernetes API) and a plain aiohttp server for the answers kmock never gives."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from aiohttp import web

from easyclaw.core.kubernetes import KubernetesApiError, KubernetesClient

POD_PATH = "/api/v1/namespaces/ns/pods/p"


@pytest.fixture
def pod(kmock: Any) -> Any:
    kmock.objects["v1/pods", "ns", "p"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
    }
    return kmock


def sent(kmock: Any, method: str) -> list[Any]:
    return [r for r in kmock if str(r.method.value).upper() == method]


async def test_service_account_token_is_read_for_every_call(pod: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    client = KubernetesClient.from_service_account(
        str(pod.url), token_path=token, ca_path=tmp_path / "absent-ca.crt"
    )
    try:
        assert await client.merge_patch(POD_PATH, {"metadata": {"labels": {"a": "1"}}})
        token.write_text("two\n")
        assert await client.merge_patch(POD_PATH, {"metadata": {"labels": {"a": "2"}}})
    finally:
        await client.aclose()
    patches = sent(pod, "PATCH")
    assert [r.headers["Authorization"] for r in patches] == ["Bearer one", "Bearer two"]
    assert patches[0].headers["Content-Type"] == "application/merge-patch+json"
    assert pod.objects["v1/pods", "ns", "p"]["metadata"]["labels"] == {"a": "2"}


async def test_kopf_credentials_sign_the_calls_in(pod: Any) -> None:
    info = kopf.ConnectionInfo(server=str(pod.url) + "/", token="kopf-token", insecure=True)
    client = KubernetesClient.from_connection(info)
    try:
        assert await client.delete(POD_PATH, {"kind": "DeleteOptions", "apiVersion": "v1"})
    finally:
        await client.aclose()
    (deletion,) = sent(pod, "DELETE")
    assert deletion.headers["Authorization"] == "Bearer kopf-token"
    assert ("v1/pods", "ns", "p") not in pod.objects


async def test_a_missing_object_is_false_not_an_error(kmock: Any) -> None:
    client = KubernetesClient(str(kmock.url))
    try:
        assert await client.merge_patch(POD_PATH, {"metadata": {}}) is False
        assert await client.delete(POD_PATH) is False
    finally:
        await client.aclose()


@pytest.fixture
async def answering(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A server answering every call with this status."""
    status: int = request.param

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": status}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("answering", [409], indirect=True)
async def test_a_failed_uid_precondition_is_false(answering: str) -> None:
    client = KubernetesClient(answering)
    try:
        assert await client.merge_patch(POD_PATH, {"metadata": {"uid": "old"}}) is False
    finally:
        await client.aclose()


@pytest.mark.parametrize("answering", [403, 500], indirect=True)
async def test_other_statuses_raise_with_the_status(answering: str) -> None:
    client = KubernetesClient(answering)
    try:
        with pytest.raises(KubernetesApiError) as raised:
            await client.merge_patch(POD_PATH, {})
    finally:
        await client.aclose()
    assert raised.value.status in (403, 500)
    assert f"HTTP {raised.value.status}" in str(raised.value)


async def test_an_unreachable_server_raises_the_client_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client = KubernetesClient(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(KubernetesApiError) as raised:
            await client.delete(POD_PATH)
    finally:
        await client.aclose()
    assert raised.value.status is None
