"""JWT mode: a Bearer token verified against the issuer's JWKS names the user (``sub``).

The JWKS is served by a real local HTTP server; tokens are signed with PyJWT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from easyclaw.api.app import create_app
from easyclaw.cli.settings import Settings
from tests.api.conftest import GUIDE_JOB, assert_error, submit
from tests.support.api_server import ApiServer, serve_api
from tests.support.jwks import KID, Jwks, serve_jwks
from tests.support.ports import free_port
from tests.support.settings import make_settings

ISSUER = "https://auth.easyclaw.test/"
AUDIENCE = "easyclaw-api"


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    with serve_jwks() as served:
        yield served


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def jwt_api(database_url: str, jwks: Jwks) -> AsyncIterator[ApiServer]:
    settings = make_settings(
        database_url,
        auth_mode="jwt",
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with serve_api(settings) as server:
        yield server


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for user_2abc; an override of None drops the claim."""
    now = int(time.time())
    values = {"sub": "user_2abc", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def sign(key: rsa.RSAPrivateKey, kid: str | None = KID, **overrides: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**overrides), key, algorithm="RS256", headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT refuses to make: unsigned, or HMAC-signed with a public key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return f"{signing_input}."
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_valid_token_submits_jobs_as_its_subject(jwt_api: ApiServer, jwks: Jwks) -> None:
    async with jwt_api.client(user_id=None, headers=bearer(sign(jwks.key))) as alice:
        job_id = await submit(alice)
        assert (await alice.get(f"/jobs/{job_id}")).status_code == 200
        listed = (await alice.get("/jobs")).json()
        assert [job["id"] for job in listed["jobs"]] == [job_id]

    other = bearer(sign(jwks.key, sub="user_9xyz"))
    async with jwt_api.client(user_id=None, headers=other) as someone_else:
        assert (await someone_else.get("/jobs")).json()["count"] == 0
        assert_error(await someone_else.get(f"/jobs/{job_id}"), 404, "JOB_NOT_FOUND")


async def test_the_x_user_id_header_means_nothing_in_jwt_mode(
    jwt_api: ApiServer, jwks: Jwks
) -> None:
    async with jwt_api.client(user_id="user_2abc") as impostor:
        assert_error(await impostor.post("/jobs", json=GUIDE_JOB), 401, "UNAUTHORIZED")
    # Nor does it change whose token it is.
    headers = {**bearer(sign(jwks.key, sub="user_9xyz")), "x-user-id": "user_2abc"}
    async with jwt_api.client(user_id=None, headers=headers) as client:
        await submit(client)
    async with jwt_api.client(user_id=None, headers=bearer(sign(jwks.key))) as victim:
        assert (await victim.get("/jobs")).json()["count"] == 0


async def test_a_token_expired_within_the_leeway_is_accepted(
    jwt_api: ApiServer, jwks: Jwks
) -> None:
    token = sign(jwks.key, exp=int(time.time()) - 10)  # leeway is 30 s for clock skew
    async with jwt_api.client(user_id=None, headers=bearer(token)) as client:
        await submit(client)


async def test_every_bad_token_is_a_401_json_error(
    jwt_api: ApiServer, jwks: Jwks, attacker_key: rsa.RSAPrivateKey
) -> None:
    public_pem = jwks.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    alg_none = {"alg": "none", "typ": "JWT", "kid": KID}
    hs256 = {"alg": "HS256", "typ": "JWT", "kid": KID}
    # case: (request headers, what the message must say)
    rejected: dict[str, tuple[dict[str, str], str]] = {
        "no Authorization header": ({}, "missing Authorization"),
        "not a bearer scheme": ({"authorization": "Basic dXNlcjpwYXNz"}, "missing Authorization"),
        "bearer without a token": ({"authorization": "Bearer"}, "missing Authorization"),
        "not a JWT": (bearer("not.a.token"), "malformed token"),
        "wrong signature": (bearer(sign(attacker_key)), "Signature verification failed"),
        "unknown key id": (bearer(sign(attacker_key, kid="key-2")), "unknown key"),
        "expired": (bearer(sign(jwks.key, exp=now - 120)), "expired"),
        "wrong audience": (bearer(sign(jwks.key, aud="someone-elses-api")), "audience"),
        "wrong issuer": (bearer(sign(jwks.key, iss="https://evil.example/")), "issuer"),
        "no expiry": (bearer(sign(jwks.key, exp=None)), "exp"),
        "no subject": (bearer(sign(jwks.key, sub=None)), "sub"),
        "subject not a user id": (bearer(sign(jwks.key, sub="alice bob")), "token subject"),
        "subject with a trailing newline": (bearer(sign(jwks.key, sub="alice\n")), "token subject"),
        "alg none": (bearer(hand_made(alg_none, claims(), None)), "'none' is not accepted"),
        "alg none, signature kept": (
            bearer(hand_made(alg_none, claims(), b"x")),
            "'none' is not accepted",
        ),
        "HS256 with the public key as secret": (
            bearer(hand_made(hs256, claims(), public_pem)),
            "'HS256' is not accepted",
        ),
    }
    for case, (headers, reason) in rejected.items():
        async with jwt_api.client(user_id=None, headers=headers) as client:
            for response in [
                await client.post("/jobs", json=GUIDE_JOB),
                await client.get("/jobs"),
            ]:
                error = assert_error(response, 401, "UNAUTHORIZED")
                assert reason in error["message"], (case, error)
                assert response.headers["www-authenticate"] == "Bearer", case
    async with jwt_api.client(user_id=None, headers=bearer(sign(jwks.key))) as owner:
        assert (await owner.get("/jobs")).json()["count"] == 0  # nothing got through


async def test_hs256_over_the_rsa_key_is_401_even_when_hs256_is_configured(
    database_url: str, jwks: Jwks
) -> None:
    # Algorithm confusion: an HMAC "signature" keyed with the public RSA key.
    settings = make_settings(
        database_url,
        auth_mode="jwt",
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["RS256", "HS256"],
    )
    public_pem = jwks.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hand_made({"alg": "HS256", "typ": "JWT", "kid": KID}, claims(), public_pem)
    async with serve_api(settings) as api:
        async with api.client(user_id=None, headers=bearer(forged)) as attacker:
            assert_error(await attacker.post("/jobs", json=GUIDE_JOB), 401, "UNAUTHORIZED")
        async with api.client(user_id=None, headers=bearer(sign(jwks.key))) as owner:
            assert (await owner.get("/jobs")).json()["count"] == 0


async def test_signing_keys_are_fetched_once_and_cached(jwt_api: ApiServer, jwks: Jwks) -> None:
    fetched_before = len(jwks.requests)
    async with jwt_api.client(user_id=None, headers=bearer(sign(jwks.key))) as client:
        for _ in range(5):
            await submit(client)
    unknown_key = bearer(sign(jwks.key, kid="rotated-away"))
    async with jwt_api.client(user_id=None, headers=unknown_key) as client:
        for _ in range(5):
            assert_error(await client.get("/jobs"), 401, "UNAUTHORIZED")
    # Neither valid tokens nor a stream of unknown key ids hammer the issuer.
    assert len(jwks.requests) - fetched_before == 1


async def test_unreachable_signing_keys_are_a_503_not_a_401(database_url: str, jwks: Jwks) -> None:
    settings = make_settings(
        database_url,
        auth_mode="jwt",
        jwt_jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with (
        serve_api(settings) as api,
        api.client(user_id=None, headers=bearer(sign(jwks.key))) as client,
    ):
        assert_error(await client.post("/jobs", json=GUIDE_JOB), 503, "AUTH_UNAVAILABLE")


def test_header_mode_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="refused when EASYCLAW_ENV=production"):
        Settings(env="production", auth_mode="header")
    production = Settings(
        env="production", auth_mode="jwt", jwt_jwks_url="https://auth.example/jwks.json"
    )
    assert production.auth_mode == "jwt"


def test_the_none_algorithm_cannot_be_configured() -> None:
    with pytest.raises(ValidationError, match="must not contain 'none'"):
        Settings(jwt_algorithms=["RS256", "none"])


def test_jwt_mode_without_a_jwks_url_fails_at_startup(database_url: str) -> None:
    with pytest.raises(ValueError, match="EASYCLAW_JWT_JWKS_URL"):
        create_app(make_settings(database_url, auth_mode="jwt"))
