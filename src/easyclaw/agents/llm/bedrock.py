"""Amazon Bedrock through boto3's ``bedrock-runtime`` Converse API.

Credentials come from the SDK's default chain (IRSA's web-identity token on
EKS, the environment or a profile elsewhere). boto3 is synchronous, so each
call runs in a thread. The SDK's own retries are off: the queue's backoff
retries the whole job instead, so a throttled attempt frees its slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from easyclaw.agents.llm import ChatMessage, ChatReply, ProviderError, ProviderRetryableError

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
    }
)


class BedrockProvider:
    def __init__(
        self,
        *,
        model: str,
        region: str | None = None,
        timeout_seconds: float = 60.0,
        client: Any = None,
    ) -> None:
        self.model = model
        self._region = region
        self._timeout = timeout_seconds
        self._client = client

    def __repr__(self) -> str:
        return f"BedrockProvider(model={self.model!r}, region={self._region!r})"

    def client(self) -> Any:
        """The ``bedrock-runtime`` client, created on first use."""
        if self._client is None:
            config = Config(
                connect_timeout=min(self._timeout, 10.0),
                read_timeout=self._timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
            )
            try:
                self._client = boto3.client(
                    "bedrock-runtime", region_name=self._region, config=config
                )
            except NoRegionError:
                raise ProviderError(
                    "no AWS region for Bedrock: set EASYCLAW_BEDROCK_REGION or AWS_REGION"
                ) from None
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[ChatMessage],
        max_tokens: int | None = None,
    ) -> ChatReply:
        request = converse_request(
            model=self.model, system=system, messages=messages, max_tokens=max_tokens
        )
        client = self.client()
        response = await asyncio.to_thread(self._converse, client, request)
        return self._parse(response)

    def _converse(self, client: Any, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = client.converse(**request)
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", "Unknown"))
            message = f"Bedrock {code}: {details.get('Message', '')}".rstrip(": ")
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in RETRYABLE_CODES or status >= 500 or status == 429:
                raise ProviderRetryableError(message) from error
            raise ProviderError(message) from error
        except NoCredentialsError:
            raise ProviderError(
                "no AWS credentials for Bedrock (on EKS, annotate the worker's service "
                "account with an IAM role: IRSA)"
            ) from None
        except (ReadTimeoutError, BotoConnectionError) as error:
            raise ProviderRetryableError(f"Bedrock unreachable: {error}") from error
        except BotoCoreError as error:
            raise ProviderError(f"Bedrock request failed: {error}") from error
        return response

    def _parse(self, response: dict[str, Any]) -> ChatReply:
        try:
            blocks = response["output"]["message"]["content"]
            text = "".join(block["text"] for block in blocks if "text" in block)
            usage = response["usage"]
            tokens_in = int(usage["inputTokens"])
            tokens_out = int(usage["outputTokens"])
        except (KeyError, TypeError, ValueError) as error:
            raise ProviderError(f"Bedrock answer without text or usage: {error!r}") from error
        return ChatReply(text=text, model=self.model, tokens_in=tokens_in, tokens_out=tokens_out)


def converse_request(
    *, model: str, system: str, messages: Sequence[ChatMessage], max_tokens: int | None
) -> dict[str, Any]:
    """The Converse arguments for a conversation.

    Converse wants the first message from the user and the roles alternating,
    so leading assistant turns are dropped and consecutive turns of one role
    are joined.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        if not turns and message.role != "user":
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append({"text": message.content})
        else:
            turns.append({"role": message.role, "content": [{"text": message.content}]})
    request: dict[str, Any] = {"modelId": model, "messages": turns}
    if system:
        request["system"] = [{"text": system}]
    if max_tokens is not None:
        request["inferenceConfig"] = {"maxTokens": max_tokens}
    return request
