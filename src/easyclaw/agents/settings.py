"""The application's settings: chat model and prices, RESEARCH, per-user state, billing."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from easyclaw.agents.llm.prices import ModelPrice
from easyclaw.core.settings import EngineSettings, SettingsBase


class ChatProviderName(StrEnum):
    ECHO = "echo"
    """Offline: answers with a labelled echo of the last message (no model involved)."""
    OPENAI = "openai"
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, Ollama)."""
    BEDROCK = "bedrock"
    """Amazon Bedrock's Converse API through boto3 (credentials from IRSA on EKS)."""


class StateBackend(StrEnum):
    LOCAL = "local"
    """Snapshots are files under ``EASYCLAW_STATE_LOCAL_DIR`` (``make up``)."""
    S3 = "s3"
    """Objects in ``EASYCLAW_STATE_S3_BUCKET``; boto3's ``AWS_ENDPOINT_URL_S3`` points
    it at moto or MinIO."""


class ChatSettings(SettingsBase):
    """CHAT and its model provider (RESEARCH summaries use it too)."""

    chat_provider: ChatProviderName = Field(
        ChatProviderName.ECHO, description="echo (offline), openai or bedrock"
    )
    chat_model: str | None = Field(
        None, description="model id sent to the provider; required for openai and bedrock"
    )
    chat_system_prompt: str = "You are a helpful assistant."
    chat_history_messages: int = Field(20, ge=0, le=1000)
    chat_timeout_seconds: float = Field(60.0, gt=0)
    chat_max_tokens: int = Field(1024, ge=1)
    bedrock_region: str | None = Field(
        None, description="Bedrock region; unset uses AWS_REGION / the SDK's default chain"
    )
    openai_base_url: str = Field(
        "https://api.openai.com/v1", description="base URL up to and including /v1"
    )
    openai_api_key: SecretStr | None = None
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description='JSON map model id -> {"input", "output"} credits per 1k tokens; '
        '"*" prices any other model',
    )


class ResearchSettings(SettingsBase):
    """RESEARCH: fetching pages and answering queries."""

    research_allow_private_addresses: bool = Field(
        False,
        description="let RESEARCH fetch private, loopback and link-local addresses "
        "(off: a guard against server-side request forgery)",
    )
    research_max_bytes: int = Field(2_000_000, ge=1, description="largest page RESEARCH reads")
    research_timeout_seconds: float = Field(
        15.0, gt=0, description="connect and read timeout of each RESEARCH request"
    )
    research_search_provider: str | None = Field(
        None,
        description="`module:function` answering RESEARCH queries; unset refuses query jobs",
    )
    research_summarise: bool = Field(
        False, description="summarise fetched pages through the CHAT provider"
    )

    @model_validator(mode="after")
    def _check_search_provider(self) -> ResearchSettings:
        if self.research_search_provider is not None and not re.fullmatch(
            r"[\w.]+:\w+", self.research_search_provider
        ):
            raise ValueError(
                "EASYCLAW_RESEARCH_SEARCH_PROVIDER must look like package.module:function"
            )
        return self


class StateSettings(SettingsBase):
    """Per-user state: job workspaces and their snapshots."""

    state_backend: StateBackend = Field(
        StateBackend.LOCAL, description="where state snapshots are kept: local or s3"
    )
    state_local_dir: Path = Field(
        Path(".easyclaw/state"), description="snapshot files of the local backend"
    )
    state_s3_bucket: str | None = Field(None, description="bucket of the s3 backend")
    state_s3_prefix: str = Field("state/", description="key prefix of every snapshot object")
    workspace_dir: Path | None = Field(
        None, description="parent of the per-job workspaces; unset means the system temp dir"
    )

    @model_validator(mode="after")
    def _check_state_backend(self) -> StateSettings:
        if self.state_backend is StateBackend.S3 and not self.state_s3_bucket:
            raise ValueError("EASYCLAW_STATE_BACKEND=s3 needs EASYCLAW_STATE_S3_BUCKET")
        return self


class BillingSettings(SettingsBase):
    """Credits: the free tier, and whether an empty balance refuses jobs."""

    billing_enforce: bool = Field(
        False, description="refuse POST /jobs with 402 when the balance is not above zero"
    )
    free_tier_credits: Decimal = Field(
        Decimal(0), ge=0, description="credits a new user starts with (a FREE_TIER transaction)"
    )


class AgentSettings(EngineSettings, ChatSettings, ResearchSettings, StateSettings, BillingSettings):
    """The application's concerns on top of the engine's (the API, worker and operator's)."""


def agent_settings(settings: object) -> AgentSettings:
    """A job context's settings as the application's (a worker's settings include them)."""
    if not isinstance(settings, AgentSettings):
        raise TypeError(f"{type(settings).__name__} does not include the application's settings")
    return settings
