"""DATABASE_URL: checked at start, and never shown with its password.

A malformed URL, a bad option (``?sslmode=bogus``, port 99999), a wrong
password, an unknown role or database are configuration errors: a process
stops at start with a one-line message naming ``DATABASE_URL`` and the cause
(the CLI exits 2). Only a server that cannot be reached is worth retrying.

libpq's own messages may quote the URL or parts of it (``invalid
percent-encoded token: "S3cr3t%ZZ"``), so every message about the URL has
the password taken out, and the password is registered with the log
formatter so that no log line can carry it either.

libpq reports connection failures without an SQLSTATE, so the server's
refusals are recognised by their (English) text; a refusal not recognised is
treated as the server being unreachable, which is retried as before.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger, hide_in_logs
from easyclaw.core.settings import SettingsError

log = EventLogger("easyclaw.db")

HIDDEN = "***"
_URL_SCHEME = re.compile(r"^postgres(?:ql)?://", re.I)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUERY_PASSWORD = re.compile(r"[?&]password=([^&#]*)", re.I)
_KEYWORD_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

# What the server or libpq says when the configuration, not the network, is wrong.
_CONFIGURATION_PROBLEMS = re.compile(
    "|".join(
        [
            r"authentication failed",
            r"no pg_hba\.conf entry",
            r"no password supplied",
            r"database \".*\" does not exist",
            r"role \".*\" does not exist",
            r"permission denied for database",
            r"is not permitted to log in",
            r"server does not support SSL, but SSL was required",
            r"invalid \S+ value",
            r"invalid port number",
            r"invalid integer value",
            r"invalid connection option",
            r"invalid URI",
            r"invalid percent-encoded",
            r"missing \"=\" after",
            r"unterminated quoted string",
            r"could not match \d+ host names",
            r"certificate file .* does not exist",
            r"could not (?:open|read) (?:certificate|private key) file",
        ]
    ),
    re.I,
)


class DatabaseConfigError(SettingsError):
    """DATABASE_URL cannot work as it is; the message says why, without the password."""


def password_fragments(url: str) -> list[str]:
    """The password of ``url`` as it is written and decoded (longest first).

    Works on malformed URLs too, where libpq cannot say what the password is.
    """
    found: list[str] = []
    if _URL_SCHEME.match(url):
        authority = _URL_SCHEME.sub("", url).split("?", 1)[0]
        if "@" in authority:
            userinfo = authority[: authority.rindex("@")]
            for candidate in (userinfo, userinfo.split("@", 1)[0]):
                found.append(candidate.partition(":")[2])
        found += _QUERY_PASSWORD.findall(url)
    else:
        found += [value.strip("'") for value in _KEYWORD_PASSWORD.findall(url)]
    try:
        parsed = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        parsed = None
    if parsed:
        found.append(str(parsed))
    fragments = {text for raw in found for text in (raw, unquote(raw)) if text}
    return sorted(fragments, key=len, reverse=True)


def hide_password(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url``'s password replaced by ``***``."""
    for fragment in password_fragments(url):
        text = text.replace(fragment, HIDDEN)
    return text


def check_database_url(url: str) -> None:
    """Refuse a URL that cannot work, before anything connects; DatabaseConfigError.

    Also registers its password with the log formatter, so no log line shows it.
    """
    hide_in_logs(*password_fragments(url))
    if _URL_SCHEME.match(url):
        authority = _URL_SCHEME.sub("", url).split("?", 1)[0]
        if authority.count("@") > 1 or "/" in authority[: max(authority.rfind("@"), 0)]:
            raise DatabaseConfigError(
                "DATABASE_URL is malformed: characters such as '@', '/', ':', '%' and '?' in "
                "the user name or password must be percent-encoded (e.g. '@' as %40)"
            )
        if _BAD_PERCENT.search(url):
            raise DatabaseConfigError(
                "DATABASE_URL is malformed: a '%' not followed by two hex digits "
                "(write a '%' in the password as %25)"
            )
    elif "://" in url.split("?", 1)[0]:
        raise DatabaseConfigError(
            "DATABASE_URL is not a PostgreSQL URL: it must start with postgresql:// "
            "(or be a libpq 'key=value' string)"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as error:
        raise DatabaseConfigError(f"DATABASE_URL is malformed: {_describe(error, url)}") from None
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise DatabaseConfigError(
                f"DATABASE_URL: port {hide_password(port, url)!r} is not a port number (1-65535)"
            )
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in _SSL_MODES:
        raise DatabaseConfigError(
            f"DATABASE_URL: sslmode {hide_password(str(sslmode), url)!r} is not one of "
            f"{', '.join(sorted(_SSL_MODES))}"
        )


def is_configuration_error(error: BaseException) -> bool:
    """Whether a failed connection attempt was refused for its configuration
    (retrying cannot help) rather than for a server that is not reachable."""
    if isinstance(error, psycopg.ProgrammingError):
        return True  # libpq could not parse the connection string
    return isinstance(error, psycopg.OperationalError) and bool(
        _CONFIGURATION_PROBLEMS.search(str(error))
    )


async def connect(url: str, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """Connect, turning failures into DatabaseConfigError (configuration) or
    DatabaseUnavailableError (unreachable), both without the password."""
    check_database_url(url)
    try:
        return await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.Error as error:
        if is_configuration_error(error):
            raise DatabaseConfigError(
                f"DATABASE_URL does not work: {_describe(error, url)}"
            ) from None
        raise DatabaseUnavailableError(_describe(error, url)) from None


def _describe(error: BaseException, url: str) -> str:
    """One line: libpq's multi-line messages joined, the password taken out."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return hide_password(text or type(error).__name__, url)
