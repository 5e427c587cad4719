"""Domain and validation errors mapped to HTTP answers: always `{"detail": ...}`, never a 500.

``STATUS_OF`` is the one table from a use case's error to its status code;
an error not in it falls back to the nearest class above it that is. Routes
declare what they may refuse with :func:`refusals`, which reads the same
table, so the OpenAPI document and the answers cannot drift apart.
A database that cannot be reached (refused, reset, terminated, starting up;
as asyncpg or SQLAlchemy raise it) is ``DatabaseUnavailable``: 503 with
``Retry-After``, never a 500. Any other database error stays a bug (500).
An ``Overloaded`` refusal is counted by its reason (``http_requests_shed_total``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from calendar_service.api.admission import count_shed
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


class FieldError(BaseModel):
    """One field a request got wrong: where (``["body", "title"]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every refusal: a sentence, or the fields at fault when input is invalid."""

    detail: str | list[FieldError]


def status_of_class(cls: type[CalendarError]) -> int:
    """The status of ``cls``, or of the nearest base class in the table."""
    for base in cls.__mro__:
        if base in STATUS_OF:
            return STATUS_OF[base]
    raise LookupError(f"{cls.__name__} has no status in STATUS_OF")


def status_of(exc: CalendarError) -> int:
    """The status of ``exc``'s class, or of the nearest base class in the table."""
    return status_of_class(type(exc))


def headers_of(exc: CalendarError) -> dict[str, str] | None:
    if isinstance(exc, RateLimited | Overloaded):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return None


Responses = dict[int | str, dict[str, Any]]


def refusal(code: int, description: str) -> Responses:
    """One refusal that is not a use case's error (a bad cursor, a missing dead-letter queue)."""
    return {code: {"model": ErrorBody, "description": description}}


def refusals(*errors: type[CalendarError]) -> Responses:
    """The `responses` of a route that may refuse with ``errors``, each at its STATUS_OF status.

    Errors sharing a status share one entry whose description names each case
    (the first line of its class's docstring).
    """
    answers: Responses = {}
    for error in errors:
        code = status_of_class(error)
        doc = (error.__dict__.get("__doc__") or error.__name__).strip().splitlines()[0]
        entry = answers.setdefault(code, {"model": ErrorBody, "description": ""})
        entry["description"] = "; ".join(filter(None, [entry["description"], doc]))
    return answers


def merged(*parts: Responses) -> Responses:
    """Several routes' worth of `responses` as one, descriptions of a shared status joined."""
    answers: Responses = {}
    for part in parts:
        for code, entry in part.items():
            if code in answers and "description" in entry:
                joined = f"{answers[code]['description']}; {entry['description']}"
                answers[code] = {**answers[code], **entry, "description": joined}
            else:
                answers[code] = {**answers.get(code, {}), **entry}
    return answers


def _json(status_code: int, detail: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _json(status.HTTP_400_BAD_REQUEST, "request body is not valid JSON")
    cleaned = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
        for e in errors
    ]
    return _json(status.HTTP_422_UNPROCESSABLE_CONTENT, cleaned)


async def _refused(request: Request, exc: CalendarError) -> JSONResponse:
    if isinstance(exc, Overloaded) and exc.reason is not None:
        count_shed(exc.reason)
    return _json(status_of(exc), str(exc), headers_of(exc))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path.

    Starlette names only the first route whose path matched; a path served by
    several routes (``GET`` and ``PATCH /events/{id}``) needs all of them.
    """
    methods: set[str] = set()
    # included routers are walked to their routes, as the OpenAPI generator walks them
    for route in iter_route_contexts(request.app.router.routes):
        declared = getattr(route, "methods", None)
        if declared and route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(declared)
    return sorted(methods)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return _json(exc.status_code, str(exc.detail), headers or None)


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
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, _database_error)
