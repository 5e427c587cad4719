"""Admin API over the dead-letter queues (design §3): list, browse, summarise, replay, drop.

The ``/admin/dlq*`` endpoints keep their documented answers but are backed
by the dead-letter store now (design §9): a queue's ``messages`` counts its
dead letters not yet replayed or deleted, and nothing here takes from a
queue. The store's own endpoints are in :mod:`calendar_service.api.admin_dead_letters`;
this module's ``router`` carries both. Admins only (403 for anyone else).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, StrictBool

from calendar_service.api import admin_dead_letters
from calendar_service.api.admin_dead_letters import (
    ADMIN_ONLY,
    BAD_CURSOR,
    CURSOR_SCHEMA,
    MAX_RATE,
    MAX_REPLAY,
    actor_of,
    no_such,
    store_errors,
)
from calendar_service.api.deps import AdminUser, ContainerDep
from calendar_service.api.errors import merged
from calendar_service.api.fields import Instant
from shared.dlq.copies import ReplayTarget
from shared.dlq.queries import MAX_PAGE, StoreFilter
from shared.dlq.replays import ReplayOrder
from shared.messaging.topology import dead_letter_queues

dlq = APIRouter(prefix="/admin/dlq", tags=["admin"], responses=ADMIN_ONLY)


class ReplayRequest(BaseModel):
    type: str | None = None
    reason: str | None = None
    message_id: str | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: int | None = Field(default=None, ge=1, le=MAX_REPLAY)
    rate: float | None = Field(default=None, ge=1, le=MAX_RATE)
    dry_run: StrictBool = False
    #: "queue": to the origin queue alone; "exchange": through the original
    #: exchange and routing key (a fanout exchange reaches every bound queue)
    route: Literal["queue", "exchange"] = "queue"


def _selection(
    queue: str,
    type_: str | None,
    reason: str | None,
    message_id: str | None,
    since: Instant | None,
    until: Instant | None,
) -> StoreFilter:
    if queue not in dead_letter_queues():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead-letter queue {queue!r}")
    return StoreFilter(
        queue=queue,
        type=type_,
        reason=reason,
        message_ids=[message_id] if message_id else [],
        since=since,
        until=until,
        state="dead",
    )


@dlq.get("")
async def list_dead_letter_queues(admin: AdminUser, container: ContainerDep) -> dict[str, Any]:
    with store_errors():
        dead = await container.dead_letters.dead_per_queue()
    return {
        "queues": [
            {"name": name, "origin": origin, "messages": dead.get(name, 0)}
            for name, origin in dead_letter_queues().items()
        ]
    }


@dlq.get("/summary")
async def failure_summary(admin: AdminUser, container: ContainerDep) -> dict[str, Any]:
    """The failure groups, largest first (the store's groups in the old shape, and more)."""
    with store_errors():
        return {"groups": await container.dead_letters.groups()}


@dlq.get("/{queue}", responses=merged(no_such("dead-letter queue"), BAD_CURSOR))
async def browse_dead_letters(
    queue: str,
    admin: AdminUser,
    container: ContainerDep,
    type_: Annotated[str | None, Query(alias="type")] = None,
    reason: str | None = None,
    message_id: str | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, json_schema_extra=CURSOR_SCHEMA)] = None,
) -> dict[str, Any]:
    selection = _selection(queue, type_, reason, message_id, since, until)
    store = container.dead_letters
    with store_errors():
        page = await store.page(selection, limit=limit, cursor=cursor)
        matched = await store.count(selection)
    return {
        "items": [s.as_dict() for s in page.items],
        "next_cursor": page.next_cursor,
        "matched": matched,
    }


@dlq.post("/{queue}/replay", responses=no_such("dead-letter queue"))
async def replay_dead_letters(
    queue: str, request: ReplayRequest, admin: AdminUser, container: ContainerDep
) -> dict[str, int]:
    """Replay and answer when done; the job goes on if the caller hangs up."""
    selection = _selection(
        queue, request.type, request.reason, request.message_id, request.since, request.until
    )
    store = container.dead_letters
    with store_errors():
        order = ReplayOrder(
            selection,
            actor=await actor_of(store, admin),
            limit=request.limit,
            rate=request.rate,
            dry_run=request.dry_run,
            route=ReplayTarget(request.route),
        )
        replay_id, matched = await store.start_replay(order, target=queue)
        await store.wait(replay_id)
        progress = await store.replay(replay_id)
    return {"matched": matched, "replayed": progress["replayed"]}


@dlq.delete(
    "/{queue}/messages/{message_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=no_such("dead-letter queue or message"),
)
async def drop_dead_letter(
    queue: str, message_id: str, admin: AdminUser, container: ContainerDep
) -> Response:
    selection = _selection(queue, None, None, message_id, None, None)
    store = container.dead_letters
    with store_errors():
        dropped = await store.delete(selection, actor=await actor_of(store, admin), target=queue)
    if dropped == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no message {message_id} in {queue}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router = APIRouter()
router.include_router(dlq)
router.include_router(admin_dead_letters.router)
