"""Model calls are counted by outcome and their reported tokens added up."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from easyclaw.agents.llm import ChatMessage, ProviderError, ProviderRetryableError
from easyclaw.agents.llm.metrics import MeteredProvider
from easyclaw.agents.llm.openai import OpenAIProvider
from tests.support.openai_server import MODEL, Answer, openai_compatible_server


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_outcomes_and_tokens_are_counted() -> None:
    before = {
        "ok": sample("easyclaw_llm_calls_total", provider="openai", outcome="ok"),
        "retryable": sample("easyclaw_llm_calls_total", provider="openai", outcome="retryable"),
        "failed": sample("easyclaw_llm_calls_total", provider="openai", outcome="failed"),
        "input": sample(
            "easyclaw_llm_tokens_total", provider="openai", model=MODEL, direction="input"
        ),
        "output": sample(
            "easyclaw_llm_tokens_total", provider="openai", model=MODEL, direction="output"
        ),
    }
    with openai_compatible_server() as server:
        provider = MeteredProvider(
            OpenAIProvider(base_url=server.url, model="m"), provider="openai"
        )
        server.then(Answer(status=503), Answer(status=400))
        messages = [ChatMessage("user", "x")]
        with pytest.raises(ProviderRetryableError):
            await provider.complete(system="s", messages=messages)
        with pytest.raises(ProviderError):
            await provider.complete(system="s", messages=messages)
        reply = await provider.complete(system="s", messages=messages)

    assert sample("easyclaw_llm_calls_total", provider="openai", outcome="ok") == before["ok"] + 1
    assert (
        sample("easyclaw_llm_calls_total", provider="openai", outcome="retryable")
        == before["retryable"] + 1
    )
    assert (
        sample("easyclaw_llm_calls_total", provider="openai", outcome="failed")
        == before["failed"] + 1
    )
    assert (
        sample("easyclaw_llm_tokens_total", provider="openai", model=MODEL, direction="input")
        == before["input"] + reply.tokens_in
    )
    assert (
        sample("easyclaw_llm_tokens_total", provider="openai", model=MODEL, direction="output")
        == before["output"] + reply.tokens_out
    )
