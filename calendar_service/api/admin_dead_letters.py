"""Admin API over the dead-letter store (design §3, §9): browse, groups, replays, audit.

Admins only. Nothing here touches a queue: reads are index-backed queries
of the store the archiver fills; a replay is a background job that answers
202 at once and reports at ``/admin/dead-letters/replays/{id}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field, StrictBool

from calendar_service.api.deps import AdminUser, ContainerDep
from calendar_service.api.errors import Responses, merged, refusal, refusals
from calendar_service.api.fields import Instant, RowId
from calendar_service.errors import Overloaded
from shared.dlq.copies import ReplayTarget
from shared.dlq.queries import CURSOR_PATTERN, MAX_PAGE, BadCursor, State, StoreFilter
from shared.dlq.replays import ReplayOrder
from shared.dlq.store import BrokerUnreachable, DeadLetterStore, UnknownReplay

#: What every admin route may answer besides its own.
ADMIN_ONLY: Responses = merged(
    refusal(status.HTTP_403_FORBIDDEN, "admin role required (as the database says now)"),
    refusals(Overloaded),
    refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "the dead-letter store or the broker is away"),
)
#: A store cursor that is not one of the declared pattern.
BAD_CURSOR = refusal(status.HTTP_400_BAD_REQUEST, "a cursor of the declared pattern is expected")
#: A cursor in the query string, as the OpenAPI document declares it.
CURSOR_SCHEMA = {"pattern": CURSOR_PATTERN}


def no_such(what: str) -> Responses:
    return refusal(status.HTTP_404_NOT_FOUND, f"no such {what}")


router = APIRouter(tags=["admin"], responses=ADMIN_ONLY)

#: A replay's rate and size are bounded: a rate of 5e-324 a second would never end.
MAX_RATE = 100_000
MAX_REPLAY = 1_000_000


@contextmanager
def store_errors() -> Iterator[None]:
    """The store's failures as HTTP answers."""
    try:
        yield
    except BadCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except UnknownReplay as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no replay {exc}") from None
    except BrokerUnreachable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "broker unreachable") from exc
    except (OSError, asyncpg.PostgresConnectionError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "store unreachable") from exc


async def actor_of(store: DeadLetterStore, admin: AdminUser) -> str:
    """The admin as the audit log names them: their e-mail address."""
    email = await (await store.db()).fetchval(
        "SELECT email FROM users WHERE id = $1", admin.user_id
    )
    return str(email or admin.user_id)


class ReplayRequest(BaseModel):
    ids: list[RowId] = Field(default_factory=list, max_length=10_000)
    group: str | None = None
    queue: str | None = None
    type: str | None = None
    reason: str | None = None
    exception_type: str | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: int | None = Field(default=None, ge=1, le=MAX_REPLAY)
    #: messages a second, at least one
    rate: float | None = Field(default=None, ge=1, le=MAX_RATE)
    dry_run: StrictBool = False
    #: stop when the replayed messages fail again; on by default for a group
    stop_if_failing: StrictBool | None = None
    route: Literal["queue", "exchange"] = "queue"

    def order(self, actor: str) -> ReplayOrder:
        selection = StoreFilter(
            ids=self.ids,
            group=self.group,
            queue=self.queue,
            type=self.type,
            reason=self.reason,
            exception_type=self.exception_type,
            since=self.since,
            until=self.until,
        )
        watching = self.stop_if_failing
        return ReplayOrder(
            selection,
            actor=actor,
            limit=self.limit,
            rate=self.rate,
            dry_run=self.dry_run,
            route=ReplayTarget(self.route),
            stop_if_failing=self.group is not None if watching is None else watching,
        )

    @property
    def target(self) -> str:
        return self.group or self.queue or ("ids" if self.ids else "filter")


@router.get("/admin/dead-letters", responses=BAD_CURSOR)
async def browse_store(
    admin: AdminUser,
    container: ContainerDep,
    queue: str | None = None,
    type_: Annotated[str | None, Query(alias="type")] = None,
    reason: str | None = None,
    exception_type: str | None = None,
    group: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    state: State | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=32, json_schema_extra=CURSOR_SCHEMA)] = None,
) -> dict[str, Any]:
    selection = StoreFilter(
        queue=queue,
        type=type_,
        reason=reason,
        exception_type=exception_type,
        group=group,
        since=since,
        until=until,
        state=state,
        q=q,
    )
    with store_errors():
        page = await container.dead_letters.page(selection, limit=limit, cursor=cursor)
    return {"items": [s.as_dict() for s in page.items], "next_cursor": page.next_cursor}


@router.get("/admin/dead-letters/groups")
async def failure_groups(
    admin: AdminUser,
    container: ContainerDep,
    queue: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    with store_errors():
        return {"groups": await container.dead_letters.groups(queue=queue, limit=limit)}


@router.get("/admin/dead-letters/replays")
async def recent_replays(admin: AdminUser, container: ContainerDep) -> dict[str, Any]:
    with store_errors():
        return {"replays": await container.dead_letters.replays()}


@router.get("/admin/dead-letters/{letter_id:int}", responses=no_such("dead letter"))
async def one_dead_letter(
    letter_id: Annotated[RowId, Path()], admin: AdminUser, container: ContainerDep
) -> dict[str, Any]:
    with store_errors():
        stored = await container.dead_letters.letter(letter_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id}")
    return stored.as_dict()


@router.post("/admin/dead-letters/replay", status_code=status.HTTP_202_ACCEPTED)
async def start_replay(
    request: ReplayRequest, admin: AdminUser, container: ContainerDep
) -> dict[str, Any]:
    store = container.dead_letters
    with store_errors():
        order = request.order(await actor_of(store, admin))
        replay_id, matched = await store.start_replay(order, target=request.target)
    return {"replay_id": str(replay_id), "matched": matched}


@router.get("/admin/dead-letters/replays/{replay_id}", responses=no_such("replay"))
async def replay_progress(
    replay_id: uuid.UUID, admin: AdminUser, container: ContainerDep
) -> dict[str, Any]:
    with store_errors():
        return await container.dead_letters.replay(replay_id)


@router.delete("/admin/dead-letters/replays/{replay_id}", responses=no_such("replay"))
async def cancel_replay(
    replay_id: uuid.UUID, admin: AdminUser, container: ContainerDep
) -> dict[str, Any]:
    store = container.dead_letters
    with store_errors():
        return await store.cancel_replay(replay_id, actor=await actor_of(store, admin))


@router.delete(
    "/admin/dead-letters/{letter_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=no_such("dead letter"),
)
async def delete_dead_letter(
    letter_id: Annotated[RowId, Path()], admin: AdminUser, container: ContainerDep
) -> None:
    store = container.dead_letters
    with store_errors():
        deleted = await store.delete(
            StoreFilter(ids=[letter_id]), actor=await actor_of(store, admin), target=str(letter_id)
        )
    if deleted == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id} to delete")


@router.get("/admin/audit", responses=BAD_CURSOR)
async def audit_log(
    admin: AdminUser,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=32, json_schema_extra=CURSOR_SCHEMA)] = None,
) -> dict[str, Any]:
    with store_errors():
        items, next_cursor = await container.dead_letters.audit(limit=limit, cursor=cursor)
    return {"items": [entry.as_dict() for entry in items], "next_cursor": next_cursor}
