"""Request dependencies as `Annotated` aliases: the caller, a unit of work, cache and quotas."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from calendar_service.bootstrap import Container
from calendar_service.cache import EventCache
from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import Caller
from calendar_service.ratelimit import Quota
from calendar_service.security import InvalidToken
from shared.logs import correlation_id

# Dependencies are `async def` even when they never await: FastAPI runs a
# plain `def` dependency in a worker thread, a hop that costs more than the
# work (a JWT check is ~20 µs) on every request.


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def get_uow(container: ContainerDep) -> AsyncIterator[UnitOfWork]:
    async with UnitOfWork(container.engine) as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


async def get_cache(container: ContainerDep) -> EventCache:
    return container.cache


CacheDep = Annotated[EventCache, Depends(get_cache)]


async def get_resend_quota(container: ContainerDep) -> Quota:
    """`RESEND_LIMIT` per RSVP (default 3 an hour) across all replicas."""
    return Quota(
        container.limiter,
        container.resend_limit,
        name="resend",
        what="confirmation resent",
        shown=container.settings.resend_limit,
    )


ResendQuota = Annotated[Quota, Depends(get_resend_quota)]


async def get_announcement_quota(container: ContainerDep) -> Quota:
    """`ANNOUNCEMENT_LIMIT` per event (default 10 an hour): each post reaches every attendee."""
    return Quota(
        container.limiter,
        container.announcement_limit,
        name="announce",
        what="announced",
        shown=container.settings.announcement_limit,
    )


AnnouncementQuota = Annotated[Quota, Depends(get_announcement_quota)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


class BearerCaller(OAuth2PasswordBearer):
    """The caller named by the request's bearer token, as one dependency.

    Reading the token, finding the container and verifying the token are one
    call, not three dependencies: FastAPI's solving costs more per dependency
    than verifying a remembered token, on every authenticated request. Being
    an ``OAuth2PasswordBearer`` keeps the scheme in the OpenAPI document.
    """

    async def __call__(self, request: HTTPConnection) -> Caller:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            raise _unauthorized("not authenticated")
        container: Container = request.app.state.container
        try:
            claims = container.tokens.verify(token)
        except InvalidToken as exc:
            raise _unauthorized("invalid or expired token") from exc
        return Caller(user_id=claims.user_id, role=claims.role)


get_caller = BearerCaller(
    tokenUrl="/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
)
CurrentUser = Annotated[Caller, Depends(get_caller)]


async def get_admin(caller: CurrentUser) -> Caller:
    if not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin role required")
    return caller


AdminUser = Annotated[Caller, Depends(get_admin)]


def current_correlation_id() -> uuid.UUID | None:
    """The request's correlation id, when the client sent a UUID one."""
    value = correlation_id.get()
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
