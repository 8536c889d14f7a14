"""``easyclaw --help`` for every command, and ``easyclaw migrate`` against a real database."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from easyclaw.cli.main import build_parser, main
from easyclaw.core.migrations import available_migrations, schema_sql
from tests.cli.helpers import run_cli_sync
from tests.support.processes import process_env
from tests.support.settings import make_settings

COMMANDS = [
    "up",
    "api",
    "worker",
    "operator",
    "migrate",
    "metrics-mirror",
    "submit",
    "get",
    "list",
    "cancel",
    "stats",
]


def test_every_command_is_covered_here() -> None:
    [subparsers] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert sorted(subparsers.choices) == sorted(COMMANDS)


@pytest.mark.slow
def test_easyclaw_help_lists_the_commands() -> None:
    script = Path(sys.executable).parent / "easyclaw"
    assert script.is_file(), "the `easyclaw` console script is not installed"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: easyclaw")
    for command in COMMANDS:
        # A long name (metrics-mirror) has its help on the next line.
        assert re.search(rf"\n    {command}\s", result.stdout), f"{command} missing from --help"


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: easyclaw {command}")
    assert "-h, --help" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


# ---------------------------------------------------------------- migrate


@pytest.mark.slow
def test_migrate_applies_then_reports_up_to_date(empty_database_url: str) -> None:
    env = process_env(make_settings(empty_database_url))
    first = run_cli_sync("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"applied {m.version:04d}_{m.name}" for m in available_migrations()
    ]
    with psycopg.connect(empty_database_url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == [m.version for m in available_migrations()]

    second = run_cli_sync("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"


@pytest.mark.slow
def test_migrate_uses_the_session_url_when_one_is_set(empty_database_url: str) -> None:
    # DATABASE_URL names PgBouncer in transaction mode (here: nothing at all); the
    # migrations' advisory lock needs a session, so they run against the server.
    env = process_env(make_settings("postgresql://nobody@127.0.0.1:1/none"))
    env["EASYCLAW_DATABASE_SESSION_URL"] = empty_database_url
    result = run_cli_sync("migrate", env=env)
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_database_url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == [m.version for m in available_migrations()]


def test_migrate_without_database_url_exits_2(empty_database_url: str) -> None:
    env = process_env(make_settings(empty_database_url))
    del env["DATABASE_URL"]
    result = run_cli_sync("migrate", env=env)
    assert result.returncode == 2
    assert "easyclaw migrate: DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_migrate_print_sql_needs_no_database() -> None:
    """What `make schema` writes to schema.sql."""
    env = process_env(make_settings("postgresql://nobody@127.0.0.1:1/none"))
    del env["DATABASE_URL"]
    result = run_cli_sync("migrate", "--print-sql", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == schema_sql()
