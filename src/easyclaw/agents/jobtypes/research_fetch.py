"""Fetch one web page for RESEARCH, guarded against server-side request forgery.

Every hop (the URL and each redirect, at most ``MAX_REDIRECTS``) is checked
before anything is sent: the scheme must be http or https, and every address
the host resolves to must be public unless private addresses are allowed.
The connection then goes to the address that was checked (the original host
name still goes into ``Host`` and TLS's SNI and certificate check), so a DNS
answer that changes between check and connect cannot slip through. The body
is streamed and cut off at the size cap; only text/html and text/plain are
read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field

import httpx

from easyclaw.core.errors import PermanentJobError, RetryableJobError, retry_after_seconds
from easyclaw.core.tls import client_tls_context

MAX_REDIRECTS = 5
ALLOWED_SCHEMES = frozenset({"http", "https"})
ALLOWED_CONTENT_TYPES = frozenset({"text/html", "text/plain"})
USER_AGENT = "EasyClaw-Research/0.1 (+https://github.com/easyclaw)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefusedError(PermanentJobError):
    """The page may not be fetched (address, scheme, type or size); retrying cannot help."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchedPage:
    url: str
    """Where the page was finally read (after redirects)."""
    status: int
    content_type: str
    charset: str | None
    body: bytes
    redirects: list[str] = field(default_factory=list)


def refusal_reason(address: IPAddress) -> str | None:
    """Why this address is not public (``"loopback"``, ``"private"``, …), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, label in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute):
            return label
    if not address.is_global:
        return "non-public"
    return None


def check_url(url: httpx.URL) -> None:
    if url.scheme not in ALLOWED_SCHEMES:
        raise FetchRefusedError(f"{url} is not an http or https URL")
    if not url.host:
        raise FetchRefusedError(f"{url} has no host")
    if url.userinfo:
        raise FetchRefusedError("URLs with credentials (user:password@) are not fetched")


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (itself if it is an address)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
            raise PermanentJobError(f"host {host} does not exist") from error
        raise RetryableJobError(f"could not resolve {host}: {error}") from error
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise PermanentJobError(f"host {host} has no address")
    return addresses


async def checked_address(url: httpx.URL, *, allow_private: bool) -> IPAddress:
    """The address to connect to for ``url``, once every address of its host passed."""
    check_url(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(url.host, port)
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise FetchRefusedError(
                    f"refused to fetch {url}: {url.host} is a {reason} address ({address}); "
                    "RESEARCH fetches public addresses only "
                    "(EASYCLAW_RESEARCH_ALLOW_PRIVATE_ADDRESSES)"
                )
    return addresses[0]


def media_type(header: str) -> tuple[str, str | None]:
    """``("text/html", "utf-8")`` from a Content-Type header."""
    kind, *parameters = header.split(";")
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return kind.strip().lower(), charset


async def fetch_page(
    url: str, *, allow_private: bool, max_bytes: int, timeout_seconds: float
) -> FetchedPage:
    """GET ``url`` under the guard, following redirects by hand."""
    current = httpx.URL(url)
    redirects: list[str] = []
    timeout = httpx.Timeout(timeout_seconds)
    async with httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        verify=client_tls_context(trust_env=False),
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = await checked_address(current, allow_private=allow_private)
            try:
                page = await _get(client, current, address, max_bytes)
            except httpx.TimeoutException as error:
                raise RetryableJobError(f"fetching {current} timed out: {error!r}") from error
            except httpx.TransportError as error:
                raise RetryableJobError(f"fetching {current} failed: {error!r}") from error
            if isinstance(page, httpx.URL):
                redirects.append(str(current))
                current = page
                continue
            return FetchedPage(
                url=str(current),
                status=page.status,
                content_type=page.content_type,
                charset=page.charset,
                body=page.body,
                redirects=redirects,
            )
    raise FetchRefusedError(f"{url} redirects more than {MAX_REDIRECTS} times")


async def _get(
    client: httpx.AsyncClient, url: httpx.URL, address: IPAddress, max_bytes: int
) -> FetchedPage | httpx.URL:
    """The page at ``url`` read from ``address``, or the URL it redirects to."""
    headers = {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    pinned = url.copy_with(host=str(address))
    async with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
        status = response.status_code
        location = response.headers.get("location")
        if response.is_redirect and location:
            return url.join(location)
        if status == 429 or status >= 500:
            raise RetryableJobError(
                f"{url} answered {status} {response.reason_phrase}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise PermanentJobError(f"{url} answered {status} {response.reason_phrase}")
        content_type, charset = media_type(response.headers.get("content-type", ""))
        if content_type not in ALLOWED_CONTENT_TYPES:
            raise FetchRefusedError(
                f"{url} is {content_type or 'of no declared type'}; "
                "RESEARCH reads text/html and text/plain only"
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefusedError(_too_large(url, max_bytes, f"{int(declared)} bytes"))
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise FetchRefusedError(_too_large(url, max_bytes, "more"))
    return FetchedPage(
        url=str(url), status=status, content_type=content_type, charset=charset, body=bytes(body)
    )


def _too_large(url: httpx.URL, max_bytes: int, size: str) -> str:
    return (
        f"{url} is too large ({size}; the limit is {max_bytes} bytes, EASYCLAW_RESEARCH_MAX_BYTES)"
    )
