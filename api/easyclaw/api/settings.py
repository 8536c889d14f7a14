"""The API process's settings: its own concern plus the engine's and the application's."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from easyclaw.agents.settings import AgentSettings
from easyclaw.core.settings import CsvList, Environment, SettingsBase


class AuthMode(StrEnum):
    HEADER = "header"
    """Trust the ``x-user-id`` header; for local runs and trusted gateways only."""
    JWT = "jwt"
    """Verify a Bearer JWT against a JWKS URL; ``sub`` is the user id."""


class ApiSettings(SettingsBase):
    """HTTP serving, its limits, and authentication."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of the API's /metrics, a listener of its own (the API port never "
        "serves it); 0 disables",
    )
    api_max_body_bytes: int = Field(1_048_576, ge=1)
    api_max_header_bytes: int = Field(
        65_536, ge=1024, le=16_777_216, description="request line and headers; larger is a 431"
    )
    api_header_timeout_seconds: float = Field(
        10.0, gt=0, description="time for a request's line and headers to arrive"
    )
    api_keep_alive_seconds: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this"
    )
    api_max_connections: int = Field(
        16_384, ge=1, description="open connections per API process; more get 503"
    )
    auth_mode: AuthMode = AuthMode.JWT
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: CsvList = Field(default_factory=lambda: ["RS256"])
    jwt_leeway_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _check_auth(self) -> ApiSettings:
        if self.env is Environment.PRODUCTION and self.auth_mode is AuthMode.HEADER:
            raise ValueError(
                "EASYCLAW_AUTH_MODE=header trusts any caller and is refused when "
                "EASYCLAW_ENV=production; use jwt"
            )
        if "none" in {alg.lower() for alg in self.jwt_algorithms}:
            raise ValueError("EASYCLAW_JWT_ALGORITHMS must not contain 'none'")
        return self


class ApiProcessSettings(AgentSettings, ApiSettings):
    """What ``easyclaw api`` reads."""
