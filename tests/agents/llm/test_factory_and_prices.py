"""Choosing a provider from settings, the echo provider, and pricing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from easyclaw.agents.llm import (
    ChatMessage,
    ChatProvider,
    ProviderError,
    chat_provider_from_settings,
)
from easyclaw.agents.llm.bedrock import BedrockProvider
from easyclaw.agents.llm.echo import EchoProvider
from easyclaw.agents.llm.metrics import MeteredProvider
from easyclaw.agents.llm.openai import OpenAIProvider
from easyclaw.agents.llm.prices import ModelPrice, cost_of, price_for
from easyclaw.cli.settings import Settings


def unwrapped(settings: Settings) -> ChatProvider:
    provider = chat_provider_from_settings(settings)
    assert isinstance(provider, MeteredProvider)
    return provider.inner


def test_echo_is_the_default_and_says_it_is_not_a_model() -> None:
    provider = chat_provider_from_settings(Settings())
    assert isinstance(provider, MeteredProvider)
    assert isinstance(provider.inner, EchoProvider)


async def test_echo_replies_with_a_labelled_echo_and_no_tokens() -> None:
    reply = await EchoProvider().complete(
        system="s", messages=[ChatMessage("user", "first"), ChatMessage("user", "Hello!")]
    )
    assert reply.text.endswith("You said: Hello!")
    assert "not a language model" in reply.text
    assert (reply.model, reply.tokens_in, reply.tokens_out) == ("echo", 0, 0)


def test_openai_and_bedrock_are_configured_from_settings() -> None:
    openai = unwrapped(
        Settings(
            chat_provider="openai",
            chat_model="llama3.1",
            openai_base_url="http://localhost:11434/v1/",
            openai_api_key="sk-secret",
        )
    )
    assert isinstance(openai, OpenAIProvider)
    assert openai.url == "http://localhost:11434/v1/chat/completions"
    assert openai.model == "llama3.1"
    bedrock = unwrapped(Settings(chat_provider="bedrock", chat_model="amazon.nova-micro-v1:0"))
    assert isinstance(bedrock, BedrockProvider)
    assert bedrock.model == "amazon.nova-micro-v1:0"


@pytest.mark.parametrize("name", ["openai", "bedrock"])
def test_a_model_provider_without_a_model_is_a_readable_error(name: str) -> None:
    with pytest.raises(ProviderError, match="EASYCLAW_CHAT_MODEL must name a model"):
        chat_provider_from_settings(Settings(chat_provider=name))


def test_unknown_provider_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="chat_provider"):
        Settings(chat_provider="gpt")


def test_prices_are_read_as_json_per_thousand_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "EASYCLAW_MODEL_PRICES",
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "*": {"input": 1, "output": 2}}',
    )
    prices = Settings().model_prices
    assert prices["gpt-4o-mini"] == ModelPrice(input=Decimal("0.15"), output=Decimal("0.6"))
    assert cost_of(price_for(prices, "gpt-4o-mini"), tokens_in=1000, tokens_out=500) == Decimal(
        "0.450000"
    )
    # an unlisted model falls back to "*"; a dated model id to the requested one
    assert price_for(prices, "other") == prices["*"]
    assert price_for(prices, "gpt-4o-mini-2024-07-18", "gpt-4o-mini") == prices["gpt-4o-mini"]
    assert cost_of(price_for({}, "x"), tokens_in=10, tokens_out=10) == 0
    assert cost_of(ModelPrice(input=Decimal(1), output=Decimal(1)), tokens_in=1, tokens_out=0) == (
        Decimal("0.001000")
    )


def test_bad_prices_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYCLAW_MODEL_PRICES", '{"m": {"input": -1, "output": 1}}')
    with pytest.raises(ValidationError, match="model_prices"):
        Settings()
