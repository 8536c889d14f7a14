"""Model calls and the fleet-wide rate limits of their provider.

A job that calls the model provider counts against the buckets
``provider:<name>`` (each start takes a token, see ``JobType.providers``) and
``tokens:provider:<name>`` (the model tokens each call used, debited here
after the call; the bucket may go below zero, which holds further starts
until it refills).
"""

from __future__ import annotations

from collections.abc import Sequence

from easyclaw.agents.llm import ChatReply
from easyclaw.agents.settings import agent_settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, pooled


def chat_providers(settings: object) -> Sequence[str]:
    """The provider CHAT calls (``EASYCLAW_CHAT_PROVIDER``)."""
    return [agent_settings(settings).chat_provider.value]


def summarising_providers(settings: object) -> Sequence[str]:
    """RESEARCH calls the CHAT provider only when it summarises pages."""
    agents = agent_settings(settings)
    return [agents.chat_provider.value] if agents.research_summarise else []


async def debit_model_tokens(pool: AsyncPool, settings: object, reply: ChatReply) -> None:
    """Take the tokens a call used from ``tokens:provider:<name>`` (if it is limited)."""
    used = reply.tokens_in + reply.tokens_out
    if used <= 0:
        return
    name = f"tokens:provider:{agent_settings(settings).chat_provider.value}"
    async with pooled(pool) as conn:
        await queue.debit_rate_limit(conn, name=name, amount=used)
