"""A DATABASE_URL that cannot work stops every server command at start, with one
line naming DATABASE_URL and the cause, exit 2, and no part of the password;
only a server that cannot be reached is retried.

Every test runs the real ``easyclaw`` command as a subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.database_url import check_database_url, hide_password, password_fragments
from tests.cli.helpers import EASYCLAW, CliResult, run_cli
from tests.support.processes import process_env
from tests.support.settings import make_settings

SERVER_COMMANDS = ["migrate", "up", "worker", "api", "operator", "metrics-mirror"]
PASSWORD = "S3cr3t%ZZ"
SECRET = "S3cr3t"  # what must never be printed, whole or in part


def env_with(url: str) -> dict[str, str]:
    return process_env(
        make_settings(url),
        EASYCLAW_OPERATOR_NAMESPACES="easyclaw-jobs",
        EASYCLAW_OPERATOR_HEALTH_PORT="0",
        EASYCLAW_METRICS_MIRROR_HEALTH_PORT="0",
        EASYCLAW_API_PORT="0",
    )


def assert_refused(result: CliResult, *causes: str) -> None:
    """Exit 2 with one line on stderr that names DATABASE_URL and each cause."""
    command = result.args[0]
    output = result.stdout + result.stderr
    assert result.returncode == 2, f"easyclaw {command}: exit {result.returncode}\n{output}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"easyclaw {command} printed:\n{result.stderr}"
    assert lines[0].startswith(f"easyclaw {command}: DATABASE_URL"), lines[0]
    for cause in causes:
        assert cause in lines[0], lines[0]
    assert SECRET not in output
    assert "Traceback" not in output


@pytest.mark.slow
async def test_a_malformed_url_is_one_line_exit_2_without_the_password_for_every_command() -> None:
    env = env_with(f"postgresql://u:{PASSWORD}@127.0.0.1:1/db")
    results = await asyncio.gather(
        *(run_cli(command, env=env, timeout=60) for command in SERVER_COMMANDS)
    )
    for result in results:
        assert_refused(result, "not followed by two hex digits")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "cause"),
    [
        (f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", "'%' not followed by two hex digits"),
        ("postgresql://u:S3cr3t/x@127.0.0.1:1/db", "must be percent-encoded"),
        ("postgresql://u:S3cr3t@x@127.0.0.1:1/db", "must be percent-encoded"),
        ("postgresql://u:S3cr3t@127.0.0.1:1/db?foo=bar", 'invalid URI query parameter: "foo"'),
        ("postgresql://u:S3cr3t@127.0.0.1:1/db?sslmode=bogus", "sslmode 'bogus'"),
        ("postgresql://u:S3cr3t@127.0.0.1:99999/db", "port '99999'"),
        ("postgresql://u:S3cr3t@127.0.0.1:S3cr3t/db", "is not a port number"),
        ("mysql://u:S3cr3t@127.0.0.1/db", "must start with postgresql://"),
        ("host=127.0.0.1 password=S3cr3t S3cr3t", "malformed"),
        ("postgresql://127.0.0.1:1/db?password=S3cr3t&port=S3cr3t", "is not a port number"),
    ],
    ids=[
        "bad-percent",
        "slash-in-password",
        "at-in-password",
        "unknown-parameter",
        "bad-sslmode",
        "port-out-of-range",
        "password-as-port",
        "other-scheme",
        "keyword-string",
        "password-parameter",
    ],
)
async def test_no_malformed_url_shows_its_password(url: str, cause: str) -> None:
    assert_refused(await run_cli("migrate", env=env_with(url)), cause)


def test_the_password_is_found_in_any_shape_of_url() -> None:
    assert password_fragments(f"postgresql://u:{PASSWORD}@h/db") == [PASSWORD]
    assert hide_password('token: "S3cr3t%ZZ"', f"postgresql://u:{PASSWORD}@h/db") == 'token: "***"'
    assert hide_password("p=p@ss w", "postgresql://u:p%40ss@h/db") == "p=*** w"
    assert hide_password("S3cr3t!", "host=h password='S3cr3t!'") == "***"
    check_database_url("postgresql://postgres@/db?host=/tmp/socket&port=5432")  # fine as it is


# ---------------------------------------------------------------- against a real server


@pytest.fixture(scope="module")
def password_role(postgres: LocalPostgres) -> Iterator[str]:
    """A role that must log in with its password (scram-sha-256), in the test cluster
    whose other roles are trusted; yields its URL with the wrong password."""
    role = "easyclaw_password_test"
    hba = postgres.pgdata / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}".encode())
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'the-right-one'".encode())
        hba.write_text(f"local all {role} scram-sha-256\n{original}")
        admin.execute("SELECT pg_reload_conf()")
    wrong = postgres.url().replace("postgres@", f"{role}:{SECRET}-wrong@", 1)
    try:
        yield wrong
    finally:
        hba.write_text(original)
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(f"DROP ROLE IF EXISTS {role}".encode())


@pytest.mark.slow
async def test_a_wrong_password_stops_the_worker_at_start(password_role: str) -> None:
    result = await run_cli("worker", env=env_with(password_role), timeout=60)
    assert_refused(result, "password authentication failed")


@pytest.mark.slow
async def test_an_unknown_database_stops_the_worker_and_the_api_at_start(
    postgres: LocalPostgres,
) -> None:
    env = env_with(postgres.url("no_such_database"))
    for command in ("worker", "api"):
        result = await run_cli(command, env=env, timeout=60)
        assert_refused(result, 'database "no_such_database" does not exist')


@pytest.mark.slow
async def test_an_unreachable_server_is_retried_not_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        *EASYCLAW,
        "worker",
        env=env_with(f"postgresql://u:{SECRET}@127.0.0.1:1/db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        seen = []
        async with asyncio.timeout(30):
            while not any('"event":"worker.started"' in line for line in seen):
                seen.append((await process.stdout.readline()).decode())
        assert any('"event":"db.unreachable_at_start"' in line for line in seen), seen
        assert process.returncode is None  # still running: it keeps trying
        assert not any(SECRET in line for line in seen)
    finally:
        process.terminate()
        await process.wait()
