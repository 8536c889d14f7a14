"""Every error the API returns is JSON: ``{"error": CODE, "message": ..., "details"?}``."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from easyclaw.core.db import UNAVAILABLE_ERRORS
from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger

log = EventLogger("easyclaw.api")


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status_code, headers=headers)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    return {
        "field": ".".join(location),
        "message": error.get("msg", ""),
        "type": error.get("type", ""),
    }


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(
        error.status_code, error.code, error.message, error.details, error.headers
    )


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "INVALID_JSON", "the request body is not valid JSON")
    details = [_problem(problem) for problem in problems]
    summary = "; ".join(
        f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details
    )
    return error_response(422, "VALIDATION_ERROR", summary or "invalid request", details)


_HTTP_CODES = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, "HTTP_ERROR")
    headers = dict(error.headers) if error.headers else None
    return error_response(error.status_code, code, str(error.detail), headers=headers)


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    log.warning("api.db_unavailable", error=str(error) or type(error).__name__)
    return error_response(
        503,
        "DATABASE_UNAVAILABLE",
        "the database is not reachable right now; try again shortly",
        headers={"Retry-After": "2"},
    )


async def _database_not_writable(_request: Request, error: Exception) -> JSONResponse:
    # A read-only database (a standby after a failover, or set read-only): the
    # request was fine and may succeed shortly, as with an outage.
    log.warning("api.database_not_writable", error=str(error).splitlines()[0])
    return error_response(
        503,
        "DATABASE_NOT_WRITABLE",
        "the database does not take writes right now; try again shortly",
        headers={"Retry-After": "2"},
    )


async def _unstorable_value(_request: Request, error: Exception) -> JSONResponse:
    # A value PostgreSQL cannot hold (a NUL character in text or jsonb, a timestamp
    # beyond its range): the request is at fault, so say so instead of answering 500.
    reason = (str(error) or type(error).__name__).splitlines()[0]
    return error_response(
        422, "VALIDATION_ERROR", f"the request holds a value that cannot be stored: {reason}"
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("api.unhandled_error", exc_info=True, path=request.url.path, error=str(error))
    return error_response(500, "INTERNAL_ERROR", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    for error_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_type, _database_unavailable)
    app.add_exception_handler(psycopg.errors.ReadOnlySqlTransaction, _database_not_writable)
    app.add_exception_handler(psycopg.DataError, _unstorable_value)
    app.add_exception_handler(Exception, _unexpected)
