"""Any OpenAI-compatible ``/v1/chat/completions`` endpoint: OpenAI, vLLM, Ollama, LM Studio.

One HTTP request per reply, on one pooled client per provider (a process
builds one provider, so connections and TLS sessions are reused across jobs);
``aclose`` closes it at shutdown. 408, 409, 429 and 5xx answers, timeouts and
connection failures are retryable (a ``Retry-After`` header is honoured); any
other 4xx fails the job with the server's own message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from easyclaw.agents.llm import ChatMessage, ChatReply, ProviderError, ProviderRetryableError
from easyclaw.core.errors import retry_after_seconds
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.tls import client_tls_context

log = EventLogger("easyclaw.llm")

RETRYABLE_STATUS = frozenset({408, 409, 429})
MAX_ERROR_TEXT = 500


class OpenAIProvider:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            transport=transport,
            verify=client_tls_context(),
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIProvider(url={self.url!r}, model={self.model!r})"

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[ChatMessage],
        max_tokens: int | None = None,
    ) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                *({"role": m.role, "content": m.content} for m in messages),
            ],
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = await self._http.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException as error:
            raise ProviderRetryableError(f"{self.url} timed out: {type(error).__name__}") from error
        except httpx.TransportError as error:
            raise ProviderRetryableError(f"{self.url} unreachable: {error}") from error
        if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
            raise ProviderRetryableError(
                f"{self.url} answered {response.status_code}: {_error_text(response)}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if response.status_code >= 400:
            raise ProviderError(
                f"{self.url} refused the request ({response.status_code}): {_error_text(response)}"
            )
        return self._parse(response)

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

    def _parse(self, response: httpx.Response) -> ChatReply:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            if not usage:
                # Counted as 0 (and so free): tokens are never guessed from text.
                log.warning("llm.usage_missing", url=self.url, model=self.model)
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
            model = str(data.get("model") or self.model)
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise ProviderRetryableError(
                f"{self.url} sent an answer that is not a chat completion: "
                f"{response.text[:MAX_ERROR_TEXT]!r}"
            ) from error
        if not isinstance(text, str):
            raise ProviderError(f"{self.url} sent non-text content: {type(text).__name__}")
        return ChatReply(text=text, model=model, tokens_in=tokens_in, tokens_out=tokens_out)


def _error_text(response: httpx.Response) -> str:
    """The server's own message (``{"error": {"message"}}``), else the start of its body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:MAX_ERROR_TEXT] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:MAX_ERROR_TEXT]
        if isinstance(error, str):
            return error[:MAX_ERROR_TEXT]
    return response.text[:MAX_ERROR_TEXT]
