"""Domain and validation errors mapped to HTTP answers: always `{"detail": ...}`, never a 500.

``STATUS_OF`` is the one table from a use case's error to its status code;
an error not in it falls back to the nearest class above it that is. A
database that cannot be reached (refused, reset, terminated, starting up;
as asyncpg or SQLAlchemy raise it) is ``DatabaseUnavailable``: 503 with
``Retry-After``, never a 500. Any other database error stays a bug (500).
"""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from calendar_service.errors import (
    CalendarError,
    Conflict,
    DatabaseUnavailable,
    LimiterUnavailable,
    NotFound,
    NotYours,
    Overloaded,
    RateLimited,
    Unauthenticated,
    Unprocessable,
)
from shared.service.database import database_unreachable

STATUS_OF: dict[type[CalendarError], int] = {
    Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    NotYours: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    Unprocessable: status.HTTP_422_UNPROCESSABLE_CONTENT,
    RateLimited: status.HTTP_429_TOO_MANY_REQUESTS,
    LimiterUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    Overloaded: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def status_of(exc: CalendarError) -> int:
    """The status of ``exc``'s class, or of the nearest base class in the table."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    raise LookupError(f"{type(exc).__name__} has no status in STATUS_OF")


def headers_of(exc: CalendarError) -> dict[str, str] | None:
    if isinstance(exc, RateLimited | Overloaded):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return None


def _json(status_code: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _json(status.HTTP_400_BAD_REQUEST, "request body is not valid JSON")
    cleaned = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors
    ]
    return _json(status.HTTP_422_UNPROCESSABLE_CONTENT, cleaned)


async def _refused(request: Request, exc: CalendarError) -> JSONResponse:
    return _json(status_of(exc), str(exc), headers_of(exc))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unreachable(exc) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return await _refused(request, DatabaseUnavailable())
    raise exc  # an answer of the database, not its absence: a bug, 500


#: What asyncpg and SQLAlchemy raise when PostgreSQL is away.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,  # refused, reset
    TimeoutError,
)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(CalendarError, _refused)  # type: ignore[arg-type]
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_error)
