"""Conversations and their messages, as CHAT reads and extends them."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from psycopg.types.json import Jsonb

from easyclaw.agents.llm import ChatMessage, Role
from easyclaw.core.db import AsyncConn
from easyclaw.core.queries import query
from easyclaw.core.storable import without_nul

TITLE_LENGTH = 80


async def user_has_conversation(conn: AsyncConn, conversation_id: UUID, user_id: str) -> bool:
    """Whether the conversation exists and is this user's (the one ownership check)."""
    cursor = await conn.execute(
        query("get_user_conversation"), {"id": conversation_id, "user_id": user_id}
    )
    return await cursor.fetchone() is not None


async def recent_messages(
    conn: AsyncConn, conversation_id: UUID, *, limit: int
) -> list[ChatMessage]:
    """The last ``limit`` messages, oldest first."""
    if limit <= 0:
        return []
    cursor = await conn.execute(
        query("recent_messages"), {"conversation_id": conversation_id, "limit": limit}
    )
    return [ChatMessage(cast(Role, role), content) for role, content in await cursor.fetchall()]


def conversation_key(conversation_id: UUID) -> str:
    """The concurrency key that runs a conversation's jobs one at a time, in order."""
    return f"conversation:{conversation_id}"


async def create_conversation(
    conn: AsyncConn, *, conversation_id: UUID, user_id: str, title: str | None
) -> None:
    """Create a conversation (nothing if it exists)."""
    await conn.execute(
        query("create_conversation"),
        {"id": conversation_id, "user_id": user_id, "title": title},
    )


def conversation_title(payload: dict[str, Any]) -> str | None:
    """A conversation's title: the first line of its first message (``payload.message``)."""
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    return message.strip().splitlines()[0][:TITLE_LENGTH]


async def start_conversation(
    conn: AsyncConn, *, conversation_id: UUID, user_id: str, first_message: str, job_id: UUID
) -> None:
    """Create the conversation (titled by its first message) and point the job at it."""
    await create_conversation(
        conn,
        conversation_id=conversation_id,
        user_id=user_id,
        title=conversation_title({"message": first_message}),
    )
    await conn.execute(
        query("attach_job_to_conversation"),
        {"conversation_id": conversation_id, "job_id": job_id},
    )


async def append_exchange(
    conn: AsyncConn,
    *,
    conversation_id: UUID,
    job_id: UUID,
    question: str,
    reply: str,
    tokens_usage: dict[str, Any],
) -> None:
    """Store a user message and the assistant's reply (with its token usage).

    A NUL in a model's reply is stored as U+FFFD: ``text`` cannot hold it.
    """
    await conn.execute(
        query("append_exchange"),
        {
            "conversation_id": conversation_id,
            "job_id": job_id,
            "question": without_nul(question),
            "reply": without_nul(reply),
            "tokens_usage": Jsonb(without_nul(tokens_usage)),
        },
    )
    await conn.execute(query("touch_conversation"), {"id": conversation_id})
