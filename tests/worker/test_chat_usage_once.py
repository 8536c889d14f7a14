"""A CHAT job whose worker is SIGKILLed mid-call is requeued, answered again, and
charged once: the charge is written with the completion, which only the
surviving attempt reaches."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.models import JobStatus
from tests.support.openai_server import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS_PER_MESSAGE,
    Answer,
    OpenAICompatibleServer,
    openai_compatible_server,
)
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import Conn, fetch_all, fetch_value, registered_worker, wait_status

pytestmark = pytest.mark.slow

USER = "chat-crash-user"
LEASE_SECONDS = 2.0


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
        openai_base_url=server.url,
        model_prices={"*": {"input": "1", "output": "1"}},
        worker_lease_seconds=LEASE_SECONDS,
        worker_heartbeat_interval_seconds=0.5,
        worker_maintenance_interval_seconds=0.5,
    )


async def test_a_job_requeued_after_sigkill_is_charged_once(
    worker_processes: WorkerProcesses, conn: Conn, server: OpenAICompatibleServer
) -> None:
    held = threading.Event()
    server.then(Answer(hold=held))  # the first call hangs until the worker is dead
    [victim] = worker_processes.start(1)
    await queue.ensure_user(conn, USER, free_credits=Decimal(5))
    job = (await queue.enqueue(conn, user_id=USER, type="CHAT", payload={"message": "hi"})).job
    await wait_for(server.received.is_set, timeout=30)
    victim.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.wait, 10)
    held.set()

    worker_processes.start(1)
    survivor_id = await registered_worker(conn, "test-worker-1")
    done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=LEASE_SECONDS + 20)

    assert done.attempts == 2
    assert done.worker_id == survivor_id
    assert len(server.requests) == 2
    tokens = 2 * PROMPT_TOKENS_PER_MESSAGE + COMPLETION_TOKENS
    cost = Decimal(tokens) / 1000
    assert done.result["cost"] == float(cost)
    usage = await fetch_all(
        conn,
        "SELECT job_id, amount FROM transactions WHERE type = 'USAGE' AND user_id = %s",
        (USER,),
    )
    assert usage == [(job.id, -cost)]
    balance = await fetch_value(conn, "SELECT credits_balance FROM users WHERE id = %s", (USER,))
    assert balance == Decimal(5) - cost
    assert await fetch_value(conn, "SELECT count(*) FROM messages") == 2
