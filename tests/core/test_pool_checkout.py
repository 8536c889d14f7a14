"""Checking pooled connections on checkout: free for a healthy connection, and a
connection the server ended is replaced before a caller gets it."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
import pytest

from easyclaw.core.db import create_pool
from easyclaw.core.settings import EngineSettings
from tests.support.waiting import wait_for


async def test_healthy_connections_cost_no_round_trip_and_ended_ones_are_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = 0
    real_check = psycopg_pool.AsyncConnectionPool.check_connection

    async def counting_check(conn: psycopg.AsyncConnection[Any]) -> None:
        nonlocal checks
        checks += 1
        await real_check(conn)

    monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "check_connection", counting_check)
    settings = EngineSettings(database_url=database_url)
    pool = create_pool(
        settings, application_name="easyclaw-test", min_size=1, max_size=1, check_on_checkout=True
    )
    await pool.open(wait=True)
    try:
        pids = set()
        for _ in range(20):
            async with pool.connection() as conn:
                pids.add(conn.info.backend_pid)
                await conn.execute("SELECT 1")
        assert (len(pids), checks) == (1, 0)

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pids.pop(),))

            async def gone() -> bool:
                cursor = await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'easyclaw-test'"
                )
                row = await cursor.fetchone()
                return row is not None and row[0] == 0

            await wait_for(gone)
        # The caller never sees the ended connection: the check finds it and the
        # pool hands out a new one.
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT 1")
            assert await cursor.fetchone() == (1,)
        assert checks == 1
    finally:
        await pool.close()
