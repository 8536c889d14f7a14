"""Databases on the session's embedded PostgreSQL: one cloned per test."""

from __future__ import annotations

import itertools
import os

import psycopg

from easyclaw.cli.local_postgres import LocalPostgres

TEMPLATE_DB = "easyclaw_template"

# Throwaway clusters need no crash safety; this makes them several times faster.
FAST_UNSAFE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}

_database_numbers = itertools.count()


def admin_execute(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def create_database(postgres: LocalPostgres, template: str) -> str:
    """A new database cloned from ``template``; returns its name."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    admin_execute(postgres.url(), f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def drop_database(postgres: LocalPostgres, name: str) -> None:
    admin_execute(postgres.url(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
