"""Credits at the API: the free tier for new users, and 402 when enforcement is on."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from easyclaw.cli.settings import Settings
from tests.api.conftest import GUIDE_JOB, assert_error, read, submit
from tests.support.api_server import ApiServer, serve_api
from tests.support.settings import make_settings
from tests.worker.helpers import Conn, fetch_all, fetch_value

CHAT_JOB: dict[str, Any] = {"type": "CHAT", "payload": {"message": "Hello from EasyClaw!"}}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, billing_enforce=True, free_tier_credits=Decimal("0.5"))


async def test_a_new_user_gets_the_free_tier_once(api: ApiServer, conn: Conn) -> None:
    async with api.client("newcomer") as client:
        await submit(client)
        await submit(client)
    rows = await fetch_all(conn, "SELECT amount, type FROM transactions WHERE user_id = 'newcomer'")
    assert rows == [(Decimal("0.5"), "FREE_TIER")]
    balance = await fetch_value(conn, "SELECT credits_balance FROM users WHERE id = 'newcomer'")
    assert balance == Decimal("0.5")


async def test_a_user_without_credits_gets_402_and_no_job(api: ApiServer, conn: Conn) -> None:
    async with api.client("broke") as client:
        await submit(client)  # creates the user with the free tier
        await conn.execute("UPDATE users SET credits_balance = 0 WHERE id = 'broke'")
        # a fresh API process would not have the user cached either way
        response = await client.post("/jobs", json=CHAT_JOB)
        body = assert_error(response, 402, "INSUFFICIENT_CREDITS")
        assert "which is 0, is not above zero" in body["message"]
        await conn.execute("UPDATE users SET credits_balance = -1.25 WHERE id = 'broke'")
        assert_error(await client.post("/jobs", json=GUIDE_JOB), 402, "INSUFFICIENT_CREDITS")
    jobs = await fetch_value(conn, "SELECT count(*) FROM jobs WHERE user_id = 'broke'")
    assert jobs == 1


async def test_credits_above_zero_are_enough(api: ApiServer, conn: Conn) -> None:
    async with api.client("payer") as client:
        job_id = await submit(client, CHAT_JOB)
        assert (await read(client, job_id))["status"] == "PENDING"


async def test_without_enforcement_a_zero_balance_may_submit(database_url: str) -> None:
    async with (
        serve_api(make_settings(database_url)) as api,
        api.client("free-rider") as client,
    ):
        await submit(client, CHAT_JOB)
