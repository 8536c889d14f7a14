"""Credits: what a job costs the user, charged once, and what a user has left.

A job's charge is a negative USAGE transaction plus the matching change of
``users.credits_balance``, written in one statement. Handlers call
:func:`charge_usage` from a completion effect, so the charge commits with the
job's COMPLETED status or not at all; the unique index on USAGE transactions
per job makes even a repeated call harmless.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from easyclaw.core.db import AsyncConn
from easyclaw.core.queries import query


async def charge_usage(
    conn: AsyncConn,
    *,
    user_id: str,
    job_id: UUID,
    cost: Decimal,
    description: str,
    meta: dict[str, Any],
) -> Decimal | None:
    """Charge ``cost`` credits for ``job_id``; the new balance, or None if already charged."""
    if cost < 0:
        raise ValueError(f"a usage cost cannot be negative: {cost}")
    cursor = await conn.execute(
        query("charge_usage"),
        {
            "user_id": user_id,
            "job_id": job_id,
            "cost": cost,
            "description": description,
            "meta": Jsonb({"jobId": str(job_id), **meta}),
        },
    )
    row = await cursor.fetchone()
    return None if row is None else Decimal(row[0])


async def balance_of(conn: AsyncConn, user_id: str) -> Decimal | None:
    """The user's credits, or None if there is no such user."""
    cursor = await conn.execute(query("get_user_balance"), {"user_id": user_id})
    row = await cursor.fetchone()
    return None if row is None else Decimal(row[0])
