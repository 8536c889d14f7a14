"""CHAT end to end in a worker: history in, reply out, messages and charge written once.

The model is a local OpenAI-compatible HTTP server (real HTTP, the real
request and response shapes); the database is the test's own PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from easyclaw.agents.llm import chat_provider_from_settings
from easyclaw.agents.llm.metrics import MeteredProvider
from easyclaw.agents.llm.openai import OpenAIProvider
from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import Job, JobStatus
from tests.support.openai_server import (
    COMPLETION_TOKENS,
    MODEL,
    PROMPT_TOKENS_PER_MESSAGE,
    Answer,
    OpenAICompatibleServer,
    openai_compatible_server,
)
from tests.support.settings import make_settings
from tests.worker.helpers import Conn, fetch_all, fetch_value, running_worker, wait_status

USER = "chat-user"
START_CREDITS = Decimal(10)
# credits per 1,000 tokens: input 2, output 4
PRICES = {MODEL: {"input": "2", "output": "4"}}


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_compatible_server() as running:
        yield running


@pytest.fixture
def settings(database_url: str, server: OpenAICompatibleServer) -> Settings:
    return make_settings(
        database_url,
        chat_provider="openai",
        chat_model="test-model",
        chat_system_prompt="You are a test.",
        openai_base_url=server.url,
        openai_api_key="sk-test",
        model_prices=PRICES,
        retry_base_seconds=0.05,
    )


async def submit(conn: Conn, message: str, *, user: str = USER, **kwargs: Any) -> Job:
    await queue.ensure_user(conn, user, free_credits=START_CREDITS)
    enqueued = await queue.enqueue(
        conn, user_id=user, type="CHAT", payload={"message": message}, **kwargs
    )
    return enqueued.job


def expected_cost(messages_sent: int) -> Decimal:
    tokens_in = PROMPT_TOKENS_PER_MESSAGE * messages_sent
    return (Decimal(2) * tokens_in + Decimal(4) * COMPLETION_TOKENS) / 1000


async def balance(conn: Conn, user: str = USER) -> Decimal:
    value: Decimal = await fetch_value(
        conn, "SELECT credits_balance FROM users WHERE id = %s", (user,)
    )
    return value


async def usage_rows(conn: Conn) -> list[tuple[Any, ...]]:
    return await fetch_all(
        conn, "SELECT job_id, amount, meta FROM transactions WHERE type = 'USAGE' ORDER BY job_id"
    )


async def test_a_first_message_starts_a_conversation_and_is_charged_once(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    async with running_worker(settings, pool):
        job = await submit(conn, "Hello from EasyClaw!")
        done = await wait_status(conn, job.id, JobStatus.COMPLETED)

    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": "Hello from EasyClaw!"},
    ]
    cost = expected_cost(2)
    assert done.result == {
        "message": "reply to: Hello from EasyClaw!",
        "conversationId": str(job.id),
        "model": MODEL,
        "tokensIn": 2 * PROMPT_TOKENS_PER_MESSAGE,
        "tokensOut": COMPLETION_TOKENS,
        "cost": float(cost),
    }
    assert done.conversation_id == job.id
    owner = await fetch_value(conn, "SELECT user_id FROM conversations WHERE id = %s", (job.id,))
    assert owner == USER
    messages = await fetch_all(
        conn,
        "SELECT role, content, tokens_usage, job_id FROM messages "
        "WHERE conversation_id = %s ORDER BY created_at, id",
        (job.id,),
    )
    assert messages == [
        ("user", "Hello from EasyClaw!", None, job.id),
        (
            "assistant",
            "reply to: Hello from EasyClaw!",
            {"model": MODEL, "tokensIn": 14, "tokensOut": COMPLETION_TOKENS},
            job.id,
        ),
    ]
    [(job_id, amount, meta)] = await usage_rows(conn)
    assert job_id == job.id
    assert amount == -cost
    assert meta == {
        "jobId": str(job.id),
        "model": MODEL,
        "tokensIn": 14,
        "tokensOut": COMPLETION_TOKENS,
        "cost": str(cost.quantize(Decimal("0.000001"))),
    }
    assert await balance(conn) == START_CREDITS - cost


async def test_a_follow_up_sends_only_the_last_20_messages_of_the_history(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    await queue.ensure_user(conn, USER, free_credits=START_CREDITS)
    conversation_id: UUID = await fetch_value(
        conn, "INSERT INTO conversations (user_id) VALUES (%s) RETURNING id", (USER,)
    )
    for number in range(25):
        role = "user" if number % 2 == 0 else "assistant"
        await conn.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at) "
            "VALUES (%s, %s, %s, now() - make_interval(secs => %s))",
            (conversation_id, role, f"message {number}", 100 - number),
        )
    async with running_worker(settings, pool):
        job = await submit(conn, "and now?", conversation_id=conversation_id)
        done = await wait_status(conn, job.id, JobStatus.COMPLETED)

    sent = server.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "You are a test."}
    assert [m["content"] for m in sent[1:]] == [f"message {n}" for n in range(5, 25)] + ["and now?"]
    assert sent[1]["role"] == "assistant"
    assert sent[-2]["role"] == "user"
    assert done.result["conversationId"] == str(conversation_id)
    assert done.result["tokensIn"] == 22 * PROMPT_TOKENS_PER_MESSAGE
    count = await fetch_value(
        conn, "SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)
    )
    assert count == 27
    last_two = await fetch_all(
        conn,
        "SELECT role, content FROM messages WHERE conversation_id = %s "
        "ORDER BY created_at DESC, id DESC LIMIT 2",
        (conversation_id,),
    )
    assert last_two == [("assistant", "reply to: and now?"), ("user", "and now?")]


async def test_throttling_is_retried_and_the_job_charged_once(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    server.then(
        Answer(
            status=429,
            body={"error": {"message": "Rate limit reached", "type": "rate_limit"}},
            headers={"Retry-After": "0"},
        )
    )
    async with running_worker(settings, pool):
        job = await submit(conn, "hi")
        done = await wait_status(conn, job.id, JobStatus.COMPLETED)

    assert done.attempts == 2
    assert len(server.requests) == 2
    assert done.result["message"] == "reply to: hi"
    [(_, amount, _)] = await usage_rows(conn)
    assert amount == -expected_cost(2)
    assert await balance(conn) == START_CREDITS - expected_cost(2)
    assert await fetch_value(conn, "SELECT count(*) FROM messages") == 2


async def test_a_rejected_request_fails_at_once_and_writes_nothing(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    server.then(
        Answer(status=400, body={"error": {"message": "The model `test-model` does not exist"}})
    )
    async with running_worker(settings, pool):
        job = await submit(conn, "hi")
        failed = await wait_status(conn, job.id, JobStatus.FAILED)

    assert failed.attempts == 1
    assert failed.error is not None
    assert "refused the request (400): The model `test-model` does not exist" in failed.error
    assert len(server.requests) == 1
    assert await usage_rows(conn) == []
    assert await fetch_value(conn, "SELECT count(*) FROM messages") == 0
    assert await fetch_value(conn, "SELECT count(*) FROM conversations") == 0
    assert await balance(conn) == START_CREDITS


async def test_another_users_conversation_is_not_found(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    await queue.ensure_user(conn, "someone-else")
    theirs: UUID = await fetch_value(
        conn, "INSERT INTO conversations (user_id) VALUES ('someone-else') RETURNING id"
    )
    async with running_worker(settings, pool):
        job = await submit(conn, "let me read it", conversation_id=theirs)
        failed = await wait_status(conn, job.id, JobStatus.FAILED)

    assert failed.attempts == 1
    assert failed.error == f"conversation {theirs} not found"
    assert server.requests == []


async def test_bad_provider_configuration_fails_the_job_with_a_readable_error(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, chat_provider="openai")  # no model id
    async with running_worker(settings, pool):
        job = await submit(conn, "hi")
        failed = await wait_status(conn, job.id, JobStatus.FAILED)
    assert failed.attempts == 1
    assert failed.error is not None
    assert "EASYCLAW_CHAT_MODEL must name a model" in failed.error


async def test_the_echo_provider_completes_offline_and_costs_nothing(
    database_url: str, pool: AsyncPool, conn: Conn
) -> None:
    settings = make_settings(database_url, model_prices={"*": {"input": 1, "output": 1}})
    async with running_worker(settings, pool):
        job = await submit(conn, "Hello from EasyClaw!")
        done = await wait_status(conn, job.id, JobStatus.COMPLETED)
    assert done.result["message"].endswith("You said: Hello from EasyClaw!")
    assert "not a language model" in done.result["message"]
    assert (done.result["model"], done.result["tokensIn"], done.result["cost"]) == ("echo", 0, 0)
    assert await usage_rows(conn) == []
    assert await fetch_value(conn, "SELECT count(*) FROM messages") == 2


async def test_a_worker_builds_one_provider_shares_its_connection_and_closes_it(
    settings: Settings, pool: AsyncPool, conn: Conn, server: OpenAICompatibleServer
) -> None:
    async with running_worker(settings.model_copy(update={"worker_concurrency": 1}), pool) as w:
        for n in range(4):
            job = await submit(conn, f"message {n}")
            await wait_status(conn, job.id, JobStatus.COMPLETED)
        provider = w.resources.get(chat_provider_from_settings)

    assert len(server.requests) == 4
    assert len(server.connections) == 1  # one client for the process, kept alive across jobs
    assert isinstance(provider, MeteredProvider)
    assert isinstance(provider.inner, OpenAIProvider)
    assert provider.inner.closed  # the worker closed it when it stopped
