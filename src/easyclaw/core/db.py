"""Connections to PostgreSQL: one pool per process, plus dedicated listeners."""

from __future__ import annotations

import math
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads

from easyclaw.core import database_url
from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.settings import DatabaseSettings

log = EventLogger("easyclaw.db")

# jsonb in and out through orjson: several times faster than the json module,
# and payloads cross this boundary on every claim and completion.
set_json_dumps(orjson.dumps)
set_json_loads(orjson.loads)

AsyncConn = psycopg.AsyncConnection[Any]
AsyncPool = psycopg_pool.AsyncConnectionPool[AsyncConn]

# Errors that mean "the database is not there right now", as opposed to a bug
# in a query: pool exhaustion and timeouts, broken connections, shutdowns.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.TooManyRequests,
    psycopg.InterfaceError,
    # The server ended a session left idle inside a transaction (this process
    # was paused): the write may simply be tried again, the lease fences it.
    psycopg.errors.IdleInTransactionSessionTimeout,
)


# Planner settings for the sessions that claim jobs. The claims walk the
# PENDING indexes in order and stop after `limit` rows (and each fair-share
# probe after one). Statistics lag a burst of submissions (autoanalyze waits for
# 10 % of the table to change), so the planner believes a handful of jobs are
# pending and picks a bitmap scan plus a sort, which reads every pending job on
# each claim: 20,000 pending jobs made a claim of 16 take 17-30 ms instead of
# under 1. Without bitmap scans the ordered index scan is the cheapest plan
# whatever the estimates say.
# And no JIT compilation: a claim's estimated cost grows with the jobs it may
# have to skip (those waiting behind a concurrency key), and past
# jit_above_cost PostgreSQL compiles the whole statement on every execution.
# 20,000 keyed jobs of one user made each fair claim of 16 take 280-300 ms,
# 283 ms of it compiling (PostgreSQL 15 with LLVM), 5 ms without.
CLAIMING_SESSION_SETTINGS = {"enable_bitmapscan": "off", "jit": "off"}


def connection_kwargs(
    settings: DatabaseSettings,
    application_name: str,
    session_settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for every connection EasyClaw opens."""
    options = [f"-c {name}={value}" for name, value in (session_settings or {}).items()]
    if settings.db_statement_timeout_ms:
        options.append(f"-c statement_timeout={settings.db_statement_timeout_ms}")
    if settings.db_idle_in_transaction_timeout_ms:
        # A process stopped between BEGIN and COMMIT (SIGSTOP, a frozen VM) would
        # keep its rows locked for good, and SKIP LOCKED would never reap them.
        options.append(
            f"-c idle_in_transaction_session_timeout={settings.db_idle_in_transaction_timeout_ms}"
        )
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "application_name": application_name,
        # libpq takes whole seconds and treats values below 2 as 2.
        "connect_timeout": max(2, math.ceil(settings.db_connect_timeout_seconds)),
        # Notice a peer that vanished (failover, network cut) within ~20 s.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 2,
        "prepare_threshold": 5 if settings.db_prepare_statements else None,
    }
    if options and settings.db_startup_options:
        kwargs["options"] = " ".join(options)
    return kwargs


def create_pool(
    settings: DatabaseSettings,
    *,
    application_name: str,
    min_size: int | None = None,
    max_size: int | None = None,
    check_on_checkout: bool = False,
    session_settings: dict[str, str] | None = None,
) -> AsyncPool:
    """An unopened pool; ``await pool.open()`` (it does not wait for the database).

    ``session_settings`` are set on each connection at its start (with the
    timeouts, unless ``db_startup_options`` is off). ``check_on_checkout``
    spares callers the first error on each stale connection after a database
    restart, at no round trip for a healthy one (see ``check_if_suspect``).
    """
    max_size = max_size or settings.db_pool_max_size
    min_size = min(settings.db_pool_min_size if min_size is None else min_size, max_size)
    return psycopg_pool.AsyncConnectionPool(
        settings.require_database_url(),
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs(settings, application_name, session_settings),
        timeout=settings.db_pool_timeout_seconds,
        # Give up a failed background reconnection at once instead of backing off
        # for minutes: the next request for a connection grows the pool again, so
        # the pool is whole again as soon as the database is back.
        reconnect_timeout=0,
        check=check_if_suspect if check_on_checkout else None,
        open=False,
        name=application_name,
    )


async def check_if_suspect(conn: AsyncConn) -> None:
    """Check a pooled connection on checkout only if the server sent it something
    while it sat idle: a server that shuts down, restarts or ends the session
    says so (an error message, then end of file) before closing, while a healthy
    idle connection has nothing to read. A ``SELECT 1`` per checkout cost every
    request a round trip (a third of a POST /jobs)."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


async def connect(settings: DatabaseSettings, *, application_name: str) -> AsyncConn:
    """A connection of its own, outside the pool, for what needs a whole session
    (LISTEN, advisory locks): to EASYCLAW_DATABASE_SESSION_URL if set, which a
    deployment behind PgBouncer in transaction mode points at the server itself."""
    return await psycopg.AsyncConnection.connect(
        settings.require_session_database_url(), **connection_kwargs(settings, application_name)
    )


async def check_database(settings: DatabaseSettings, *, application_name: str) -> bool:
    """At start, connect once: a DATABASE_URL that cannot work (malformed, bad option,
    wrong password, unknown database) raises DatabaseConfigError, so the process
    stops naming the cause; an unreachable server returns False (the caller's
    pool retries it as usual); True if the server answered."""
    url = settings.require_database_url()
    try:
        conn = await database_url.connect(url, **connection_kwargs(settings, application_name))
    except DatabaseUnavailableError as error:
        log.warning("db.unreachable_at_start", error=str(error))
        return False
    await conn.close()
    return True


@asynccontextmanager
async def pooled(pool: AsyncPool) -> AsyncIterator[AsyncConn]:
    """A pooled connection; "database not reachable" surfaces as DatabaseUnavailableError."""
    try:
        async with pool.connection() as conn:
            yield conn
    except UNAVAILABLE_ERRORS as error:
        raise DatabaseUnavailableError(str(error) or type(error).__name__) from error


def is_unavailable(error: BaseException) -> bool:
    return isinstance(error, (DatabaseUnavailableError, *UNAVAILABLE_ERRORS))


__all__ = [
    "UNAVAILABLE_ERRORS",
    "AsyncConn",
    "AsyncPool",
    "check_database",
    "connect",
    "connection_kwargs",
    "create_pool",
    "dict_row",
    "is_unavailable",
    "pooled",
]
