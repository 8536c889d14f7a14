"""Prometheus metrics of model calls, whichever job type makes them.

They live in the process's default registry, so a worker serves them on its
``/metrics`` with the queue metrics: calls by outcome (a rising
``retryable`` count is throttling), their duration, and the tokens used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from easyclaw.agents.llm import (
    ChatMessage,
    ChatProvider,
    ChatReply,
    ProviderRetryableError,
)

LLM_CALLS = Counter(
    "easyclaw_llm_calls_total",
    "Model calls by provider and outcome (ok, retryable, failed)",
    ["provider", "outcome"],
)
LLM_CALL_DURATION = Histogram(
    "easyclaw_llm_call_duration_seconds",
    "Wall time of a model call",
    ["provider"],
    buckets=(0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
LLM_TOKENS = Counter(
    "easyclaw_llm_tokens_total",
    "Tokens the provider reported, by model and direction (input, output)",
    ["provider", "model", "direction"],
)


class MeteredProvider:
    """A provider whose calls are counted, timed and their tokens added up."""

    def __init__(self, inner: ChatProvider, *, provider: str) -> None:
        self.inner = inner
        self.provider = provider

    def __repr__(self) -> str:
        return f"MeteredProvider({self.inner!r})"

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[ChatMessage],
        max_tokens: int | None = None,
    ) -> ChatReply:
        started = time.perf_counter()
        outcome = "failed"
        try:
            reply = await self.inner.complete(
                system=system, messages=messages, max_tokens=max_tokens
            )
            outcome = "ok"
        except ProviderRetryableError:
            outcome = "retryable"
            raise
        finally:
            LLM_CALLS.labels(self.provider, outcome).inc()
            LLM_CALL_DURATION.labels(self.provider).observe(time.perf_counter() - started)
        LLM_TOKENS.labels(self.provider, reply.model, "input").inc(reply.tokens_in)
        LLM_TOKENS.labels(self.provider, reply.model, "output").inc(reply.tokens_out)
        return reply
