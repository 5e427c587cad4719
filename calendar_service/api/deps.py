"""Request dependencies as `Annotated` aliases: the container, the caller, a unit of work."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.engine import RowMapping

from calendar_service.bootstrap import Container
from calendar_service.db.uow import UnitOfWork
from calendar_service.security import InvalidToken
from shared.logs import correlation_id

_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


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


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_caller(
    container: ContainerDep, token: Annotated[str | None, Depends(_bearer)]
) -> Caller:
    if token is None:
        raise _unauthorized("not authenticated")
    try:
        claims = container.tokens.verify(token)
    except InvalidToken as exc:
        raise _unauthorized("invalid or expired token") from exc
    return Caller(user_id=claims.user_id, role=claims.role)


CurrentUser = Annotated[Caller, Depends(get_caller)]


async def get_admin(caller: CurrentUser) -> Caller:
    if not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin role required")
    return caller


AdminUser = Annotated[Caller, Depends(get_admin)]


async def require_account(uow: UnitOfWork, caller: Caller) -> RowMapping:
    """The caller's user row; a valid token whose account is gone is a 401."""
    user = await uow.users.by_id(caller.user_id)
    if user is None:
        raise _unauthorized("the account of this token no longer exists")
    return user


def current_correlation_id() -> uuid.UUID | None:
    """The request's correlation id, when the client sent a UUID one."""
    value = correlation_id.get()
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
