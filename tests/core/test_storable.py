"""NUL characters (which PostgreSQL's text and jsonb refuse) in what the workers store."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg

from easyclaw.agents import conversations
from easyclaw.core import queue
from easyclaw.core.models import JobStatus, Outcome
from easyclaw.core.storable import contains_nul, without_nul

Conn = psycopg.AsyncConnection[Any]


def test_every_string_and_key_loses_its_nul_and_nothing_else_changes() -> None:
    value = {"a\x00": ["x\x00y", {"k": "\x00"}, 1, 2.5, None, True], "plain": "ok"}
    cleaned = without_nul(value)
    assert cleaned == {"a\ufffd": ["x\ufffdy", {"k": "\ufffd"}, 1, 2.5, None, True], "plain": "ok"}
    assert contains_nul(value)
    assert not contains_nul(cleaned)
    assert without_nul("no nul here") == "no nul here"


async def test_a_batch_with_nul_in_a_result_and_an_error_is_stored(conn: Conn) -> None:
    await queue.ensure_user(conn, "nul-user")
    await queue.enqueue_many(conn, user_id="nul-user", type="ECHO", payloads=[{}, {}, {}])
    jobs = await queue.claim_jobs(
        conn, worker_id="nul-worker", types=["ECHO"], limit=3, lease_seconds=60
    )
    outcomes = [
        Outcome(job_id=jobs[0].id, attempt=1, status=JobStatus.COMPLETED, result={"t\x00": "\x00"}),
        Outcome(job_id=jobs[1].id, attempt=1, status=JobStatus.FAILED, error="bad \x00 byte"),
        Outcome(job_id=jobs[2].id, attempt=1, status=JobStatus.COMPLETED, result={"fine": 1}),
    ]
    accepted = await queue.finish_jobs(conn, worker_id="nul-worker", outcomes=outcomes)
    assert len(accepted) == 3
    first = await queue.get_job(conn, jobs[0].id, user_id=None)
    second = await queue.get_job(conn, jobs[1].id, user_id=None)
    assert first is not None
    assert first.result == {"t\ufffd": "\ufffd"}
    assert second is not None
    assert second.error == "bad \ufffd byte"


async def test_a_model_reply_with_nul_is_added_to_the_conversation(conn: Conn) -> None:
    await queue.ensure_user(conn, "nul-user")
    job = (await queue.enqueue(conn, user_id="nul-user", type="CHAT", payload={})).job
    conversation_id = uuid4()
    await conversations.start_conversation(
        conn, conversation_id=conversation_id, user_id="nul-user", first_message="hi", job_id=job.id
    )
    await conversations.append_exchange(
        conn,
        conversation_id=conversation_id,
        job_id=job.id,
        question="hi",
        reply="a reply with \x00 in it",
        tokens_usage={"model": "m\x00"},
    )
    messages = await conversations.recent_messages(conn, conversation_id, limit=10)
    assert [m.content for m in messages] == ["hi", "a reply with \ufffd in it"]
