"""CHAT: one turn of a conversation with a language model.

The attempt reads the conversation's recent history and calls the provider;
everything it writes (the conversation if new, the question and the reply,
the USAGE charge) is a completion effect, committed with the job's COMPLETED
status and only then. A repeated attempt may call the model again, but the
conversation and the user's balance change exactly once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from easyclaw.agents.billing import charge_usage
from easyclaw.agents.conversations import (
    append_exchange,
    recent_messages,
    start_conversation,
    user_has_conversation,
)
from easyclaw.agents.llm import ChatMessage, chat_provider_from_settings
from easyclaw.agents.llm.limits import chat_providers, debit_model_tokens
from easyclaw.agents.llm.prices import cost_of, price_for
from easyclaw.agents.settings import agent_settings
from easyclaw.core.db import AsyncConn, pooled
from easyclaw.core.errors import PermanentJobError
from easyclaw.core.jobtypes import JobContext, JobType

MAX_MESSAGE_LENGTH = 100_000


class ChatPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)


async def run_chat(ctx: JobContext) -> dict[str, Any]:
    payload = ChatPayload.model_validate(ctx.payload)
    settings = agent_settings(ctx.settings)
    job = ctx.job
    provider = ctx.resources.get(chat_provider_from_settings)
    is_new = job.conversation_id is None
    # A new conversation takes the job's id, so every attempt of the job agrees on it.
    conversation_id = job.id if job.conversation_id is None else job.conversation_id
    history: list[ChatMessage] = []
    if not is_new:
        async with pooled(ctx.pool) as conn:
            if not await user_has_conversation(conn, conversation_id, job.user_id):
                raise PermanentJobError(f"conversation {conversation_id} not found")
            history = await recent_messages(
                conn, conversation_id, limit=settings.chat_history_messages
            )
    reply = await provider.complete(
        system=settings.chat_system_prompt,
        messages=[*history, ChatMessage("user", payload.message)],
        max_tokens=settings.chat_max_tokens,
    )
    await debit_model_tokens(ctx.pool, ctx.settings, reply)
    price = price_for(settings.model_prices, reply.model, settings.chat_model)
    cost = cost_of(price, tokens_in=reply.tokens_in, tokens_out=reply.tokens_out)
    usage = {"model": reply.model, "tokensIn": reply.tokens_in, "tokensOut": reply.tokens_out}

    async def record(conn: AsyncConn) -> None:
        if is_new:
            await start_conversation(
                conn,
                conversation_id=conversation_id,
                user_id=job.user_id,
                first_message=payload.message,
                job_id=job.id,
            )
        await append_exchange(
            conn,
            conversation_id=conversation_id,
            job_id=job.id,
            question=payload.message,
            reply=reply.text,
            tokens_usage=usage,
        )
        if cost > 0:
            await charge_usage(
                conn,
                user_id=job.user_id,
                job_id=job.id,
                cost=cost,
                description=f"CHAT with {reply.model}",
                meta={**usage, "cost": str(cost)},
            )

    ctx.on_completion(record)
    ctx.log.info(
        "chat.replied",
        job_id=str(job.id),
        conversation_id=str(conversation_id),
        model=reply.model,
        tokens_in=reply.tokens_in,
        tokens_out=reply.tokens_out,
        cost=str(cost),
    )
    return {
        "message": reply.text,
        "conversationId": str(conversation_id),
        "model": reply.model,
        "tokensIn": reply.tokens_in,
        "tokensOut": reply.tokens_out,
        "cost": _as_number(cost),
    }


def _as_number(cost: Decimal) -> float | int:
    return int(cost) if cost == cost.to_integral_value() else float(cost)


CHAT = JobType(
    name="CHAT",
    handler=run_chat,
    payload_model=ChatPayload,
    conversational=True,
    providers=chat_providers,
    description="Sends a message to the configured language model, with the conversation's "
    "recent history, and stores both in the conversation.",
)
