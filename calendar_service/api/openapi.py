"""The OpenAPI document, completed with the answers that middleware and handlers give.

A route declares what its use cases may refuse (``refusals`` in
``api/errors.py``). What every route shares is added here, from the same
table: the 401 and the user tier's 429 of a route that reads a bearer token,
the anonymous 429 of every counted path, the 503 of the admission limit on
every path but the probes, a JSON body's 400 and 413, and the one error
model of a 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, status
from pydantic.json_schema import models_json_schema

from calendar_service.api.errors import ErrorBody, status_of_class
from calendar_service.api.middleware import PROBE_PATHS, AnonymousRateLimit
from calendar_service.errors import Overloaded, RateLimited, Unauthenticated

ERROR_REF = "#/components/schemas/ErrorBody"
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def _shared_answers(path: str, operation: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    if "security" in operation:
        answers[str(status_of_class(Unauthenticated))] = _error(
            "no bearer token, or one that is invalid or expired (WWW-Authenticate: Bearer)"
        )
    if path not in AnonymousRateLimit.UNCOUNTED:
        answers[str(status_of_class(RateLimited))] = _error(
            "past the caller's request limit (RATE_LIMIT_ANONYMOUS per address, "
            "RATE_LIMIT_USER or RATE_LIMIT_ADMIN per account); see Retry-After"
        )
    if path not in PROBE_PATHS:
        answers[str(status_of_class(Overloaded))] = _error(
            "more requests in flight than MAX_REQUESTS_IN_FLIGHT; see Retry-After"
        )
    body = operation.get("requestBody", {}).get("content", {})
    if "application/json" in body:
        answers[str(status.HTTP_400_BAD_REQUEST)] = _error("the request body is not valid JSON")
    if body:
        answers[str(status.HTTP_413_CONTENT_TOO_LARGE)] = _error(
            f"the request body is over {max_body_bytes} bytes"
        )
    return answers


def _error_schemas() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(ErrorBody, "serialization")], ref_template="#/components/schemas/{model}"
    )
    found: dict[str, Any] = schemas.get("$defs", {})
    return found


def complete(document: dict[str, Any], *, max_body_bytes: int) -> dict[str, Any]:
    """Add the shared answers to every operation of ``document`` (in place) and return it."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _error_schemas().items():
        components.setdefault(name, schema)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, shared in _shared_answers(path, operation, max_body_bytes).items():
                own = responses.setdefault(code, shared)
                if own is not shared:  # the route's own reasons first, then the shared one
                    own["description"] = f"{own['description']}; {shared['description']}"
                    own.setdefault("content", shared["content"])
            invalid = responses.get(str(status.HTTP_422_UNPROCESSABLE_CONTENT))
            if invalid is not None:
                invalid["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
                if invalid.get("description") == "Validation Error":
                    invalid["description"] = "fields that are invalid; detail names each"
    for name in _FASTAPI_422:
        components.pop(name, None)
    return document


def install_openapi(app: FastAPI, *, max_body_bytes: int) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), max_body_bytes=max_body_bytes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
