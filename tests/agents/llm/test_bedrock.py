"""The Bedrock provider against botocore's Stubber, which checks requests and
responses against the real ``bedrock-runtime`` service model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from easyclaw.agents.llm import ChatMessage, ProviderError, ProviderRetryableError
from easyclaw.agents.llm.bedrock import BedrockProvider

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def converse_response(text: str, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        },
        "metrics": {"latencyMs": 120},
    }


async def test_converse_request_shape_and_reported_tokens(client: Any, stubber: Stubber) -> None:
    stubber.add_response(
        "converse",
        converse_response("Bonjour", tokens_in=31, tokens_out=4),
        expected_params={
            "modelId": MODEL_ID,
            "system": [{"text": "answer in French"}],
            "messages": [
                {"role": "user", "content": [{"text": "hi"}]},
                {"role": "assistant", "content": [{"text": "salut"}]},
                {"role": "user", "content": [{"text": "hello"}]},
            ],
            "inferenceConfig": {"maxTokens": 256},
        },
    )
    provider = BedrockProvider(model=MODEL_ID, client=client)
    reply = await provider.complete(
        system="answer in French",
        messages=[
            ChatMessage("user", "hi"),
            ChatMessage("assistant", "salut"),
            ChatMessage("user", "hello"),
        ],
        max_tokens=256,
    )
    assert (reply.text, reply.model, reply.tokens_in, reply.tokens_out) == (
        "Bonjour",
        MODEL_ID,
        31,
        4,
    )


async def test_history_is_made_to_start_with_the_user_and_alternate(
    client: Any, stubber: Stubber
) -> None:
    stubber.add_response(
        "converse",
        converse_response("ok", 1, 1),
        expected_params={
            "modelId": MODEL_ID,
            "messages": [
                {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
            ],
        },
    )
    provider = BedrockProvider(model=MODEL_ID, client=client)
    await provider.complete(
        system="",
        messages=[
            ChatMessage("assistant", "left over from a cut history"),
            ChatMessage("user", "a"),
            ChatMessage("user", "b"),
        ],
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 429),
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelNotReadyException", 429),
        ("ModelTimeoutException", 408),
    ],
)
async def test_throttling_and_outages_are_retryable(
    client: Any, stubber: Stubber, code: str, status: int
) -> None:
    stubber.add_client_error(
        "converse", service_error_code=code, service_message="busy", http_status_code=status
    )
    with pytest.raises(ProviderRetryableError, match=f"Bedrock {code}: busy"):
        await BedrockProvider(model=MODEL_ID, client=client).complete(
            system="", messages=[ChatMessage("user", "x")]
        )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 404),
    ],
)
async def test_rejected_requests_fail_at_once(
    client: Any, stubber: Stubber, code: str, status: int
) -> None:
    stubber.add_client_error(
        "converse", service_error_code=code, service_message="no", http_status_code=status
    )
    with pytest.raises(ProviderError, match=f"Bedrock {code}: no"):
        await BedrockProvider(model=MODEL_ID, client=client).complete(
            system="", messages=[ChatMessage("user", "x")]
        )


async def test_no_region_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ProviderError, match="EASYCLAW_BEDROCK_REGION"):
        await BedrockProvider(model=MODEL_ID).complete(
            system="", messages=[ChatMessage("user", "x")]
        )
