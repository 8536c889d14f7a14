"""FastAPI dependencies, as ``Annotated`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from easyclaw.api.errors import ApiError
from easyclaw.api.state import ApiState

# Declared so that /docs shows both ways to authenticate; which one is accepted
# is decided by EASYCLAW_AUTH_MODE.
_user_header = APIKeyHeader(name="x-user-id", auto_error=False, scheme_name="UserIdHeader")
_bearer = HTTPBearer(auto_error=False, scheme_name="BearerJWT")


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.easyclaw
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def current_user(
    request: Request,
    state: StateDep,
    _header: Annotated[str | None, Security(_user_header)] = None,
    _token: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> str:
    return await state.authenticator.user_id(request.headers)


CurrentUser = Annotated[str, Depends(current_user)]


async def reject_repeated_query_parameters(request: Request) -> None:
    """Every query parameter of this API takes one value; ``?type=A&type=B`` is a
    422 rather than silently the last one (which is what the framework would do)."""
    keys = [key for key, _ in request.query_params.multi_items()]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            f"query parameter {', '.join(repr(key) for key in repeated)} was given more than "
            "once; each takes a single value",
            details=[{"loc": ["query", key], "msg": "given more than once"} for key in repeated],
        )
