"""The one submission path of the API and the operator (``agents.submission.submit_job``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
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
from easyclaw.cli.settings import Settings
from easyclaw.core.db import AsyncPool
from easyclaw.core.jobtypes import JobTypeRegistry
from tests.support.settings import make_settings

Conn = psycopg.AsyncConnection[Any]


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


# ---------------------------------------------------------------- concurrency keys


def chat(**fields: Any) -> JobRequest:
    return JobRequest(user_id="alice", type="CHAT", payload={"message": "Hi\nthere"}, **fields)


async def test_a_chat_job_starts_its_conversation_and_is_keyed_by_it(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings, conn: Conn
) -> None:
    users = KnownUsers()
    opening = (
        await submit_job(pool, chat(), registry=registry, settings=settings, users=users)
    ).job
    assert opening.conversation_id == opening.id
    assert (opening.concurrency_key, opening.concurrency_limit) == (
        f"conversation:{opening.id}",
        1,
    )
    cursor = await conn.execute("SELECT id, user_id, title FROM conversations")
    assert await cursor.fetchall() == [(opening.id, "alice", "Hi")]
    reply = (
        await submit_job(
            pool,
            chat(conversation_id=opening.id),
            registry=registry,
            settings=settings,
            users=users,
        )
    ).job
    assert (reply.conversation_id, reply.concurrency_key) == (
        opening.id,
        opening.concurrency_key,
    )
    assert reply.seq is not None
    assert opening.seq is not None
    assert reply.seq > opening.seq


async def test_a_repeated_chat_submission_returns_its_job_and_starts_no_second_conversation(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings, conn: Conn
) -> None:
    users = KnownUsers()

    async def submit() -> Any:
        return await submit_job(
            pool, chat(idempotency_key="once"), registry=registry, settings=settings, users=users
        )

    first, again = await submit(), await submit()
    assert first.created
    assert not again.created
    assert again.job.id == first.job.id
    cursor = await conn.execute("SELECT count(*) FROM conversations")
    assert await cursor.fetchone() == (1,)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"concurrency_key": "has space"}, "concurrencyKey must be 1-200"),
        ({"concurrency_key": "k\n"}, "concurrencyKey must be 1-200"),
        ({"concurrency_key": "k", "concurrency_limit": 0}, "concurrencyLimit must lie between"),
        ({"concurrency_limit": 2}, "concurrencyLimit needs a concurrencyKey"),
    ],
)
async def test_bad_concurrency_keys_are_refused(
    pool: AsyncPool,
    registry: JobTypeRegistry,
    settings: Settings,
    request_fields: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(JobRefusedError, match=message):
        await submit_job(
            pool, echo(**request_fields), registry=registry, settings=settings, users=KnownUsers()
        )


async def test_chat_takes_no_key_of_its_own(
    pool: AsyncPool, registry: JobTypeRegistry, settings: Settings
) -> None:
    with pytest.raises(JobRefusedError, match="CHAT jobs are keyed by their conversation"):
        await submit_job(
            pool,
            chat(concurrency_key="mine"),
            registry=registry,
            settings=settings,
            users=KnownUsers(),
        )
