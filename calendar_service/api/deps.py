"""Request dependencies as `Annotated` aliases: the caller, a unit of work, cache and quotas.

Request limits (design §8) are taken here too. The tier of a signed-in caller
(`RATE_LIMIT_USER`, `RATE_LIMIT_ADMIN`) is counted while the bearer token is
read; the RSVP answer and cancel routes add `RSVP_CHANGE_LIMIT` to the same
Redis round trip. Tiers and the change limit fail open when Redis is down (a
metric counts what went unlimited): the API must not go down with its cache.
`LOGIN_LIMIT` and `REGISTER_LIMIT` fail closed with 503.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import Counter as MetricCounter
from starlette.requests import HTTPConnection

from calendar_service.bootstrap import Container
from calendar_service.cache import EventCache
from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import Caller
from calendar_service.errors import LimiterUnavailable
from calendar_service.ratelimit import Counter, Quota, refused_as_error
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


async def get_reader(container: ContainerDep) -> AsyncIterator[UnitOfWork]:
    """A read-only unit of work: no transaction, so two round trips fewer per read."""
    async with UnitOfWork(container.engine, read_only=True) as uow:
        yield uow


ReaderDep = Annotated[UnitOfWork, Depends(get_reader)]


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


LIMITS_SKIPPED = MetricCounter(
    "rate_limit_skipped_total",
    "Requests let through without their limits because Redis could not be asked",
    ["limit"],
)


def client_ip(connection: HTTPConnection) -> str:
    """The client's address: nginx's X-Forwarded-For, as uvicorn's proxy_headers applied it."""
    return connection.client.host if connection.client else "unknown"


async def admit_strictly(container: Container, *counters: Counter) -> None:
    """Count ``counters``; 429 past a limit, 503 when Redis cannot be asked (fails closed)."""
    refusal = await container.admission.admit(counters)
    if refusal is not None:
        raise refused_as_error(refusal)


async def admit_leniently(
    container: Container, counters: list[Counter], *, replay_marker: str | None = None
) -> None:
    """Count ``counters``; 429 past a limit, but let the request through when Redis is down."""
    try:
        refusal = await container.admission.admit(counters, replay_marker=replay_marker)
    except LimiterUnavailable:
        LIMITS_SKIPPED.labels(counters[0].name).inc()
        return
    if refusal is not None:
        raise refused_as_error(refusal)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


class BearerCaller(OAuth2PasswordBearer):
    """The caller named by the request's bearer token, as one dependency, within its limits.

    Reading the token, finding the container, verifying the token and counting
    the caller's tier are one call, not four dependencies: FastAPI's solving
    costs more per dependency than verifying a remembered token, on every
    authenticated request. Being an ``OAuth2PasswordBearer`` keeps the scheme
    in the OpenAPI document. ``changes_rsvp``: the route sends an email and a
    push, so ``RSVP_CHANGE_LIMIT`` is counted with the tier, in the same round
    trip, and not again for a replay under the same Idempotency-Key.
    """

    def __init__(self, *, changes_rsvp: bool = False) -> None:
        super().__init__(
            tokenUrl="/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
        )
        self.changes_rsvp = changes_rsvp

    async def __call__(self, request: HTTPConnection) -> Caller:  # type: ignore[override]
        token = await super().__call__(request)
        if token is None:
            raise _unauthorized("not authenticated")
        container: Container = request.app.state.container
        try:
            claims = container.tokens.verify(token)
        except InvalidToken as exc:
            raise _unauthorized("invalid or expired token") from exc
        caller = Caller(user_id=claims.user_id, role=claims.role)
        limits, user = container.limits, str(caller.user_id)
        # the token's role picks the tier: a revoked admin keeps it until the token expires
        tier = (
            Counter(limits.admin, "admin", user, "requests sent")
            if caller.is_admin
            else (Counter(limits.user, "user", user, "requests sent"))
        )
        counters, replay_marker = [tier], None
        if self.changes_rsvp:
            counters.append(Counter(limits.rsvp_change, "rsvp-change", user, "RSVP changed", True))
            key = request.headers.get("idempotency-key")
            replay_marker = f"{user}:{key[:200]}" if key else None
        await admit_leniently(container, counters, replay_marker=replay_marker)
        return caller


get_caller = BearerCaller()
CurrentUser = Annotated[Caller, Depends(get_caller)]
#: the caller of a route that answers or withdraws an RSVP (an email and a push each)
RsvpChanger = Annotated[Caller, Depends(BearerCaller(changes_rsvp=True))]


async def get_admin(caller: CurrentUser, container: ContainerDep) -> Caller:
    """An admin as the database says now, not as an older token says: a revoke acts at once."""
    async with UnitOfWork(container.engine) as uow:
        user = await uow.users.by_id(caller.user_id)
    if user is None or user["role"] != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin role required")
    return Caller(user_id=caller.user_id, role="admin")


AdminUser = Annotated[Caller, Depends(get_admin)]


def current_correlation_id() -> uuid.UUID | None:
    """The request's correlation id, when the client sent a UUID one."""
    value = correlation_id.get()
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
