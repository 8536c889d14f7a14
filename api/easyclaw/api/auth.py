"""Who is calling: the ``x-user-id`` header (header mode) or a verified JWT (jwt mode).

JWT mode verifies a Bearer token's signature against the issuer's JWKS (as
Clerk, Auth0 or Cognito publish it), its expiry, issuer and audience; the
``sub`` claim is the user id. The JWKS is fetched asynchronously and cached,
and refreshed (at most every few seconds) when a token names an unknown key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from easyclaw.api.errors import ApiError
from easyclaw.api.settings import ApiSettings, AuthMode
from easyclaw.core.ids import is_user_id

JWKS_CACHE_SECONDS = 300.0
JWKS_MIN_REFRESH_SECONDS = 5.0


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


def check_user_id(user_id: str, source: str) -> str:
    if not is_user_id(user_id):
        raise unauthorized(f"{source} must be 1-200 letters, digits or ._@:|+-")
    return user_id


class JwksCache:
    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > JWKS_CACHE_SECONDS
        unknown = kid not in self._keys if kid else not self._keys
        if stale or (unknown and now - self._fetched_at > JWKS_MIN_REFRESH_SECONDS):
            await self._refresh()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid is None or kid not in self._keys:
            raise unauthorized("token signed with an unknown key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at <= JWKS_MIN_REFRESH_SECONDS:
                return
            try:
                response = await self._client.get(self._url, timeout=5.0)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
                if not self._keys:
                    raise ApiError(
                        503, "AUTH_UNAVAILABLE", f"cannot fetch signing keys: {error}"
                    ) from error
                return  # keep using the keys we have
            self._keys = {key.key_id or "": key for key in keys}
            self._fetched_at = time.monotonic()


class Authenticator:
    def __init__(self, settings: ApiSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.mode = settings.auth_mode
        self._jwks: JwksCache | None = None
        if self.mode is AuthMode.JWT:
            if not settings.jwt_jwks_url:
                raise ValueError(
                    "EASYCLAW_AUTH_MODE=jwt needs EASYCLAW_JWT_JWKS_URL (and usually "
                    "EASYCLAW_JWT_ISSUER and EASYCLAW_JWT_AUDIENCE)"
                )
            self._jwks = JwksCache(settings.jwt_jwks_url, client)

    async def user_id(self, headers: Any) -> str:
        """The caller's user id, or a 401 ApiError saying what is wrong."""
        if self.mode is AuthMode.HEADER:
            user_id = headers.get("x-user-id")
            if not user_id:
                raise unauthorized("missing x-user-id header")
            return check_user_id(user_id, "x-user-id")
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("missing Authorization: Bearer <token> header")
        return await self._verify(token.strip())

    async def _verify(self, token: str) -> str:
        assert self._jwks is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise unauthorized(f"malformed token: {error}") from error
        algorithm = header.get("alg")
        if algorithm not in self.settings.jwt_algorithms:
            raise unauthorized(f"token algorithm {algorithm!r} is not accepted")
        key = await self._jwks.key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=self.settings.jwt_algorithms,
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                leeway=self.settings.jwt_leeway_seconds,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.settings.jwt_audience is not None,
                    "verify_iss": self.settings.jwt_issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError as error:
            raise unauthorized("token has expired") from error
        except jwt.InvalidAudienceError as error:
            raise unauthorized("token is not meant for this audience") from error
        except jwt.InvalidIssuerError as error:
            raise unauthorized("token comes from an unexpected issuer") from error
        except jwt.PyJWTError as error:
            raise unauthorized(f"invalid token: {error}") from error
        except TypeError as error:
            # The token's algorithm is of another family than the key its kid names
            # (say HS256 over an RSA key: algorithm confusion); PyJWT raises TypeError.
            raise unauthorized(f"token algorithm {algorithm!r} does not fit its key") from error
        subject = claims.get("sub")
        if not isinstance(subject, str):
            raise unauthorized("token has no subject")
        return check_user_id(subject, "token subject")
