"""The operator submits through the same core function as ``POST /jobs``: a user
who arrives through an EasyClawJob gets the same free tier, and is refused for
the same lack of credits, as one who arrives through the REST API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from easyclaw.cli.settings import Settings
from tests.api.conftest import GUIDE_JOB, assert_error, submit
from tests.operator.conftest import NAMESPACE, OperatorUnderTest, job_rows
from tests.support.api_server import serve_api
from tests.support.settings import make_settings
from tests.worker.helpers import Conn, fetch_all, fetch_value


@pytest.fixture
def operator_settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        operator_namespaces=[NAMESPACE],
        operator_health_port=0,
        operator_resync_seconds=60.0,
        billing_enforce=True,
        free_tier_credits=Decimal("0.5"),
    )


async def user_state(conn: Conn, user_id: str) -> tuple[Any, ...]:
    balance = await fetch_value(conn, "SELECT credits_balance FROM users WHERE id = %s", (user_id,))
    transactions = await fetch_all(
        conn,
        "SELECT amount, type, description FROM transactions WHERE user_id = %s ORDER BY id",
        (user_id,),
    )
    return balance, transactions


def echo_for(user_id: str) -> dict[str, Any]:
    return {**GUIDE_JOB, "userId": user_id}


async def test_a_new_user_gets_the_same_free_tier_through_the_api_and_the_operator(
    operator: OperatorUnderTest, operator_settings: Settings, conn: Conn
) -> None:
    async with serve_api(operator_settings) as api, api.client("via-api") as client:
        await submit(client)
    await operator.create("first", echo_for("via-operator"))
    await operator.wait_phase("first", "Pending")

    via_api = await user_state(conn, "via-api")
    assert via_api == (
        Decimal("0.5"),
        [(Decimal("0.5"), "FREE_TIER", "free tier credit for a new user")],
    )
    assert await user_state(conn, "via-operator") == via_api


async def test_a_user_without_credits_is_refused_by_the_api_and_the_operator(
    operator: OperatorUnderTest, operator_settings: Settings, conn: Conn
) -> None:
    async with serve_api(operator_settings) as api, api.client("broke") as client:
        await submit(client)  # creates the user, with the free tier
        await conn.execute("UPDATE users SET credits_balance = 0 WHERE id = 'broke'")
        refused = assert_error(
            await client.post("/jobs", json=GUIDE_JOB), 402, "INSUFFICIENT_CREDITS"
        )

    await operator.create("unpaid", echo_for("broke"))
    status = await operator.wait_phase("unpaid", "Failed")
    assert status["error"] == refused["message"]
    assert "balance of user 'broke', which is 0, is not above zero" in status["error"]
    assert "jobId" not in status
    assert len(await job_rows(conn)) == 1  # only the API's first job
