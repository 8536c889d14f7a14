"""A small REST client for the CLI's submit/get/list/cancel/stats commands."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """How the CLI reaches an EasyClaw API (environment, overridable by flags)."""

    model_config = SettingsConfigDict(env_prefix="EASYCLAW_", extra="ignore")

    api_url: str = Field("http://127.0.0.1:8000", description="Base URL of the EasyClaw API")
    user_id: str | None = Field(None, description="Sent as x-user-id (header auth mode)")
    token: SecretStr | None = Field(None, description="Sent as Authorization: Bearer (jwt mode)")


class ApiCallError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        if isinstance(body, dict) and "error" in body:
            message = f"{status} {body['error']}: {body.get('message', '')}"
        elif status == 0:  # no HTTP answer at all
            message = str(body)
        else:
            message = f"{status}: {body}"
        super().__init__(message)


class EasyClawClient:
    def __init__(self, settings: ClientSettings, *, timeout: float = 75.0) -> None:
        headers = {}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        elif settings.user_id:
            headers["x-user-id"] = settings.user_id
        self._http = httpx.Client(base_url=settings.api_url, headers=headers, timeout=timeout)

    def __enter__(self) -> EasyClawClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiCallError(0, f"cannot reach {self._http.base_url}: {error}") from error
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiCallError(response.status_code, body)
        return body

    def submit(self, job: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/jobs", json=job, headers=headers)

    def get(self, job_id: str, *, wait: float = 0) -> Any:
        params = {"wait": wait} if wait else {}
        return self._call("GET", f"/jobs/{job_id}", params=params)

    def list(self, **filters: Any) -> Any:
        params = {key: value for key, value in filters.items() if value is not None}
        return self._call("GET", "/jobs", params=params)

    def cancel(self, job_id: str) -> Any:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def stats(self) -> Any:
        return self._call("GET", "/stats")
