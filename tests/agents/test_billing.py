"""Charging a job: one USAGE row and one balance change, however often it is asked."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from easyclaw.agents import billing
from easyclaw.core import queue
from tests.worker.helpers import Conn, fetch_all


async def test_a_job_is_charged_at_most_once(conn: Conn) -> None:
    await queue.ensure_user(conn, "u", free_credits=Decimal(3))
    job_id = uuid4()
    meta = {"model": "m", "tokensIn": 10, "tokensOut": 2}
    first = await billing.charge_usage(
        conn, user_id="u", job_id=job_id, cost=Decimal("1.25"), description="d", meta=meta
    )
    again = await billing.charge_usage(
        conn, user_id="u", job_id=job_id, cost=Decimal("1.25"), description="d", meta=meta
    )
    assert first == Decimal("1.75")
    assert again is None
    assert await billing.balance_of(conn, "u") == Decimal("1.75")
    rows = await fetch_all(
        conn, "SELECT type, amount, meta, job_id FROM transactions ORDER BY type"
    )
    assert rows == [
        ("FREE_TIER", Decimal(3), {}, None),
        ("USAGE", Decimal("-1.25"), {"jobId": str(job_id), **meta}, job_id),
    ]


async def test_balances_of_unknown_users_and_negative_costs(conn: Conn) -> None:
    assert await billing.balance_of(conn, "nobody") is None
    with pytest.raises(ValueError, match="cannot be negative"):
        await billing.charge_usage(
            conn, user_id="u", job_id=uuid4(), cost=Decimal(-1), description="", meta={}
        )
