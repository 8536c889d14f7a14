"""The OpenAI-compatible provider against a real local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from easyclaw.agents.llm import ChatMessage, ProviderError, ProviderRetryableError
from easyclaw.agents.llm.openai import OpenAIProvider
from tests.support.openai_server import (
    COMPLETION_TOKENS,
    MODEL,
    PROMPT_TOKENS_PER_MESSAGE,
    Answer,
    OpenAICompatibleServer,
    openai_compatible_server,
)


@pytest.fixture
def server() -> Iterator[OpenAICompatibleServer]:
    with openai_compatible_server() as running:
        yield running


def provider(server: OpenAICompatibleServer, **kwargs: object) -> OpenAIProvider:
    options: dict[str, object] = {"base_url": server.url, "model": "my-model", "api_key": "sk-1"}
    options.update(kwargs)
    return OpenAIProvider(**options)  # type: ignore[arg-type]


async def test_sends_the_chat_completions_shape_and_reads_reported_usage(
    server: OpenAICompatibleServer,
) -> None:
    history = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
        ChatMessage("user", "?"),
    ]
    reply = await provider(server).complete(system="be brief", messages=history, max_tokens=64)
    assert server.requests == [
        {
            "model": "my-model",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "?"},
            ],
            "max_tokens": 64,
        }
    ]
    assert server.authorizations == ["Bearer sk-1"]
    assert reply.text == "reply to: ?"
    assert reply.model == MODEL  # what the server says it ran
    assert (reply.tokens_in, reply.tokens_out) == (4 * PROMPT_TOKENS_PER_MESSAGE, COMPLETION_TOKENS)


async def test_no_key_sends_no_authorization(server: OpenAICompatibleServer) -> None:
    await provider(server, api_key=None).complete(system="", messages=[ChatMessage("user", "x")])
    assert server.authorizations == [None]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_throttling_and_server_errors_are_retryable(
    server: OpenAICompatibleServer, status: int
) -> None:
    server.then(
        Answer(
            status=status, body={"error": {"message": "slow down"}}, headers={"Retry-After": "3"}
        )
    )
    with pytest.raises(ProviderRetryableError, match=f"{status}: slow down") as caught:
        await provider(server).complete(system="", messages=[ChatMessage("user", "x")])
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_fail_at_once_with_the_servers_message(
    server: OpenAICompatibleServer, status: int
) -> None:
    server.then(Answer(status=status, body={"error": {"message": "model does not exist"}}))
    with pytest.raises(ProviderError, match=f"refused the request \\({status}\\): model does not"):
        await provider(server).complete(system="", messages=[ChatMessage("user", "x")])


async def test_a_timeout_is_retryable(server: OpenAICompatibleServer) -> None:
    server.then(Answer(hold=threading.Event()))
    with pytest.raises(ProviderRetryableError, match="timed out"):
        await provider(server, timeout_seconds=0.3).complete(
            system="", messages=[ChatMessage("user", "x")]
        )
    server.release_all()


async def test_an_unreachable_server_is_retryable() -> None:
    with openai_compatible_server() as stopped:
        url = stopped.url
    with pytest.raises(ProviderRetryableError, match="unreachable"):
        await OpenAIProvider(base_url=url, model="m").complete(
            system="", messages=[ChatMessage("user", "x")]
        )


async def test_the_key_is_not_in_the_providers_repr(server: OpenAICompatibleServer) -> None:
    assert "sk-1" not in repr(provider(server))


async def test_a_reply_without_usage_counts_zero_tokens_and_says_so(
    server: OpenAICompatibleServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    server.then(Answer(body=body))
    with caplog.at_level("WARNING", logger="easyclaw.llm"):
        reply = await provider(server).complete(system="", messages=[ChatMessage("user", "x")])
    assert (reply.text, reply.tokens_in, reply.tokens_out) == ("hi", 0, 0)
    assert [r.getMessage() for r in caplog.records] == ["llm.usage_missing"]


async def test_calls_reuse_one_connection_until_closed(server: OpenAICompatibleServer) -> None:
    model = provider(server)
    for n in range(5):
        await model.complete(system="s", messages=[ChatMessage("user", str(n))])
    assert len(server.requests) == 5
    assert len(server.connections) == 1  # one TCP (and TLS) handshake, not five
    await model.aclose()
    assert model.closed
