"""The offline provider: repeats the last user message, clearly labelled as not a model.

It lets the whole CHAT flow (queue, worker, history, accounting) run with no
network and no credentials; ``easyclaw up`` uses it unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from easyclaw.agents.llm import ChatMessage, ChatReply

ECHO_MODEL = "echo"
ECHO_LABEL = "[echo provider - not a language model]"


class EchoProvider:
    async def aclose(self) -> None:
        pass

    async def complete(
        self,
        *,
        system: str,
        messages: Sequence[ChatMessage],
        max_tokens: int | None = None,
    ) -> ChatReply:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        # No model ran, so no tokens were used: counts are zero, never guessed.
        return ChatReply(
            text=f"{ECHO_LABEL} You said: {last}", model=ECHO_MODEL, tokens_in=0, tokens_out=0
        )
