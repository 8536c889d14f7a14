"""The one submission path of the API and the operator (``agents.submission.submit_job``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from easyclaw.agents.submission import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    InsufficientCreditsError,
    JobRefusedError,
    JobRequest,
    KnownUsers,
    submit_job,
)
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.settings import Settings
from tests.support.settings import make_settings


def echo(**fields: Any) -> JobRequest:
    return JobRequest(user_id="alice", type="ECHO", payload={"message": "hi"}, **fields)


async def test_a_run_at_in_the_past_becomes_the_submission_time(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings
) -> None:
    users = KnownUsers()
    past = await submit_job(
        pool,
        echo(run_at=datetime(2, 1, 1, tzinfo=UTC)),
        registry=registry,
        settings=settings,
        users=users,
    )
    assert past.job.run_at == past.job.created_at
    later = datetime.now(UTC) + timedelta(days=1)
    future = await submit_job(
        pool, echo(run_at=later), registry=registry, settings=settings, users=users
    )
    assert future.job.run_at == later


@pytest.mark.parametrize("priority", [PRIORITY_MIN - 1, PRIORITY_MAX + 1])
async def test_a_priority_outside_the_range_is_refused(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings, priority: int
) -> None:
    with pytest.raises(
        JobRefusedError, match=f"priority must lie between -1000 and 1000, not {priority}"
    ):
        await submit_job(
            pool, echo(priority=priority), registry=registry, settings=settings, users=KnownUsers()
        )


async def test_defaults_come_from_the_type_then_the_settings(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings
) -> None:
    enqueued = await submit_job(
        pool, echo(), registry=registry, settings=settings, users=KnownUsers()
    )
    assert enqueued.job.max_attempts == settings.job_default_max_attempts
    assert enqueued.job.priority == 0


async def test_billing_enforcement_refuses_a_user_without_credits(
    pool: AsyncPool, registry: JobTypeRegistry, database_url: str
) -> None:
    enforcing = make_settings(database_url, billing_enforce=True)
    with pytest.raises(InsufficientCreditsError) as refused:
        await submit_job(pool, echo(), registry=registry, settings=enforcing, users=KnownUsers())
    assert refused.value.code == "INSUFFICIENT_CREDITS"
    assert refused.value.balance == Decimal(0)
