"""Domain and validation errors mapped to HTTP answers: always `{"detail": ...}`, never a 500."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from calendar_service.domain import CapacityBelowSeatsTaken, EventFull, NothingToCancel
from calendar_service.services import NotFound, NotYours


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


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _json(status.HTTP_404_NOT_FOUND, str(exc))


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    return _json(status.HTTP_403_FORBIDDEN, str(exc))


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return _json(status.HTTP_409_CONFLICT, str(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(NotYours, _forbidden)
    app.add_exception_handler(NothingToCancel, _not_found)
    app.add_exception_handler(EventFull, _conflict)
    app.add_exception_handler(CapacityBelowSeatsTaken, _conflict)
