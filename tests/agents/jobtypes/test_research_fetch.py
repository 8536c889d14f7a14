"""RESEARCH fetches only what it should: public addresses, text pages, within the caps."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from easyclaw.agents.jobtypes.research_fetch import (
    FetchRefusedError,
    checked_address,
    fetch_page,
    refusal_reason,
)
from easyclaw.core.errors import PermanentJobError, RetryableJobError
from tests.support.web_pages import BIG_BYTES, SLOW, STREAMED_BIG, WebServer


async def fetch(url: str, **overrides: Any) -> Any:
    options: dict[str, Any] = {
        "allow_private": True,
        "max_bytes": BIG_BYTES // 2,
        "timeout_seconds": 5.0,
    }
    options.update(overrides)
    return await fetch_page(url, **options)


async def test_reads_an_html_page_with_its_type_and_charset(web: WebServer) -> None:
    page = await fetch(f"{web.url}/article.html")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert page.charset == "utf-8"
    assert b"Octopuses are clever" in page.body
    assert page.redirects == []
    # The connection went to the checked address, the Host header kept the name.
    assert web.requests == [("/article.html", f"127.0.0.1:{web.port}")]


async def test_follows_redirects_checking_each_hop(web: WebServer) -> None:
    page = await fetch(f"{web.url}/redirect-1")
    assert page.url == f"{web.url}/article.html"
    assert page.redirects == [f"{web.url}/redirect-1", f"{web.url}/redirect-2"]
    with pytest.raises(FetchRefusedError, match="not an http or https URL"):
        await fetch(f"{web.url}/to-file")


async def test_gives_up_after_five_redirects(web: WebServer) -> None:
    with pytest.raises(FetchRefusedError, match="redirects more than 5 times"):
        await fetch(f"{web.url}/loop")
    assert len(web.requests) == 6


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_unless_allowed(web: WebServer, host: str) -> None:
    with pytest.raises(FetchRefusedError, match="loopback address"):
        await fetch(f"http://{host}:{web.port}/article.html", allow_private=False)
    assert web.requests == []  # refused before anything was sent


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "private"),  # noqa: S104
        ("100.64.0.1", "non-public"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_non_public_addresses_are_named(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


async def test_the_guard_checks_literal_addresses_without_dns() -> None:
    url = httpx.URL("http://[::ffff:169.254.169.254]/latest/meta-data/")
    with pytest.raises(FetchRefusedError, match="link-local"):
        await checked_address(url, allow_private=False)
    assert str(await checked_address(httpx.URL("https://8.8.8.8/"), allow_private=False)) == (
        "8.8.8.8"
    )
    with pytest.raises(FetchRefusedError, match="credentials"):
        await checked_address(httpx.URL("http://user:pw@8.8.8.8/"), allow_private=False)


@pytest.mark.parametrize("path", ["/image.png", "/data.json"])
async def test_other_content_types_are_refused(web: WebServer, path: str) -> None:
    with pytest.raises(FetchRefusedError, match="reads text/html and text/plain only"):
        await fetch(f"{web.url}{path}")


@pytest.mark.parametrize("path", ["/big.html", STREAMED_BIG])
async def test_pages_over_the_size_cap_are_refused(web: WebServer, path: str) -> None:
    with pytest.raises(FetchRefusedError, match="too large"):
        await fetch(f"{web.url}{path}")
    page = await fetch(f"{web.url}{path}", max_bytes=BIG_BYTES * 2)
    assert len(page.body) > BIG_BYTES


async def test_client_errors_fail_and_server_errors_and_timeouts_retry(web: WebServer) -> None:
    with pytest.raises(PermanentJobError, match="404 Not Found") as not_found:
        await fetch(f"{web.url}/missing")
    assert not isinstance(not_found.value, RetryableJobError)
    with pytest.raises(RetryableJobError, match="503") as unavailable:
        await fetch(f"{web.url}/unavailable")
    assert unavailable.value.retry_after == 7
    with pytest.raises(RetryableJobError, match="timed out"):
        await fetch(f"{web.url}{SLOW}", timeout_seconds=0.3)
    with pytest.raises(RetryableJobError, match="failed"):
        await fetch("http://127.0.0.1:9/nothing-listens-here")


async def test_unknown_hosts_fail_permanently() -> None:
    with pytest.raises(PermanentJobError, match="does not exist"):
        await fetch("http://no-such-host.invalid/")
