"""Language-model providers behind one small interface.

A :class:`ChatProvider` turns a system prompt and a conversation into one
reply, with the token counts the provider itself reported. Which provider runs
is a setting (``EASYCLAW_CHAT_PROVIDER``): ``echo`` (offline, not a model),
``openai`` (any OpenAI-compatible endpoint) or ``bedrock`` (Converse API).

Failures are sorted for the queue: :class:`ProviderRetryableError` (throttling,
timeouts, 5xx) is retried with the job's backoff; :class:`ProviderError`
(rejected request, bad configuration) fails the job at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from easyclaw.core.errors import PermanentJobError, RetryableJobError

if TYPE_CHECKING:
    from easyclaw.agents.settings import ChatSettings

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatReply:
    """The model's answer and what it cost in tokens, as the provider reported them."""

    text: str
    model: str
    tokens_in: int
    tokens_out: int


class ChatProvider(Protocol):
    """A language model that answers a conversation."""

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[ChatMessage],
        max_tokens: int | None = None,
    ) -> ChatReply:
        """The reply to ``messages`` (oldest first, the last one from the user)."""
        ...

    async def aclose(self) -> None:
        """Release the provider's connections (called once, at process shutdown)."""
        ...


class ProviderError(PermanentJobError):
    """The provider refused the request or is misconfigured; retrying cannot help."""


class ProviderRetryableError(RetryableJobError):
    """Throttled, timed out or a server error: the job is retried after a backoff."""


def chat_provider_from_settings(settings: ChatSettings) -> ChatProvider:
    """The provider ``EASYCLAW_CHAT_PROVIDER`` names, configured from the settings.

    Raises :class:`ProviderError` naming the variable when the configuration
    cannot work (for example no model id for ``openai`` or ``bedrock``).
    """
    from easyclaw.agents.llm.metrics import MeteredProvider

    return MeteredProvider(_provider(settings), provider=settings.chat_provider.value)


def _provider(settings: ChatSettings) -> ChatProvider:
    from easyclaw.agents.settings import ChatProviderName

    if settings.chat_provider is ChatProviderName.ECHO:
        from easyclaw.agents.llm.echo import EchoProvider

        return EchoProvider()
    model = settings.chat_model
    if not model:
        raise ProviderError(
            f"EASYCLAW_CHAT_MODEL must name a model when EASYCLAW_CHAT_PROVIDER="
            f"{settings.chat_provider.value}"
        )
    if settings.chat_provider is ChatProviderName.OPENAI:
        from easyclaw.agents.llm.openai import OpenAIProvider

        api_key = settings.openai_api_key
        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=api_key.get_secret_value() if api_key else None,
            model=model,
            timeout_seconds=settings.chat_timeout_seconds,
        )
    from easyclaw.agents.llm.bedrock import BedrockProvider

    return BedrockProvider(
        model=model,
        region=settings.bedrock_region,
        timeout_seconds=settings.chat_timeout_seconds,
    )


__all__ = [
    "ChatMessage",
    "ChatProvider",
    "ChatReply",
    "ProviderError",
    "ProviderRetryableError",
    "Role",
    "chat_provider_from_settings",
]
