"""Admin API over the dead-letter queues (design §3): list, browse, summarise, replay, drop.

Admins only (403 for anyone else). Every call but the list is one pass of
:mod:`shared.dlq` over the queue (a publish and an ack per message in it),
made as the ``ops`` broker user (``ADMIN_AMQP_URL``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from calendar_service.api.deps import AdminUser, ContainerDep
from shared.dlq.office import BadCursor, BrokerRefused, DeadLetterOffice, UnknownQueue
from shared.dlq.passes import QueueBusy, ReplayTarget
from shared.dlq.selection import Filter
from shared.dlq.views import letter_as_dict

router = APIRouter(prefix="/admin/dlq", tags=["admin"])

MAX_PAGE = 200


class ReplayRequest(BaseModel):
    type: str | None = None
    reason: str | None = None
    message_id: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0, le=100_000)
    dry_run: bool = False
    #: "queue": to the origin queue alone; "exchange": through the original
    #: exchange and routing key (a fanout exchange reaches every bound queue)
    route: Literal["queue", "exchange"] = "queue"

    def selection(self) -> Filter:
        return _filter(self.type, self.reason, self.message_id, self.since, self.until)


def _filter(
    type_: str | None,
    reason: str | None,
    message_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Filter:
    ids = frozenset({message_id}) if message_id else frozenset()
    return Filter(type=type_, reason=reason, message_ids=ids, since=since, until=until)


@asynccontextmanager
async def _office(
    container: ContainerDep, queue: str | None = None
) -> AsyncIterator[DeadLetterOffice]:
    """The container's office, with its failures as HTTP answers."""
    try:
        if queue is not None:
            DeadLetterOffice.origin_of(queue)
        yield container.dead_letters
    except UnknownQueue:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead-letter queue {queue!r}") from None
    except BadCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except QueueBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except BrokerRefused as exc:
        # the broker's topology is not the product's, or it refused a copy:
        # whatever was not confirmed is still in the DLQ
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"broker refused: {exc}") from exc
    except (OSError, ConnectionError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "broker unreachable") from exc


@router.get("")
async def list_dead_letter_queues(admin: AdminUser, container: ContainerDep) -> dict[str, Any]:
    async with _office(container) as office:
        depths = await office.depths()
    return {
        "queues": [{"name": d.name, "origin": d.origin, "messages": d.messages} for d in depths]
    }


@router.get("/summary")
async def failure_summary(admin: AdminUser, container: ContainerDep) -> dict[str, Any]:
    """Dead letters grouped by queue, message type, reason and exception, largest first."""
    async with _office(container) as office:
        groups = await office.summary()
    return {
        "groups": [
            {
                "queue": g.queue,
                "type": g.type,
                "reason": g.reason,
                "exception_type": g.exception_type,
                "count": g.count,
                "last_failed_at": g.last_failed_at.isoformat() if g.last_failed_at else None,
            }
            for g in groups
        ]
    }


@router.get("/{queue}")
async def browse_dead_letters(
    queue: str,
    admin: AdminUser,
    container: ContainerDep,
    type_: Annotated[str | None, Query(alias="type")] = None,
    reason: str | None = None,
    message_id: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    selection = _filter(type_, reason, message_id, since, until)
    async with _office(container, queue) as office:
        page = await office.browse(queue, selection, limit=limit, cursor=cursor)
    return {
        "items": [letter_as_dict(letter) for letter in page.items],
        "next_cursor": page.next_cursor,
        "matched": page.matched,
    }


@router.post("/{queue}/replay")
async def replay_dead_letters(
    queue: str, request: ReplayRequest, admin: AdminUser, container: ContainerDep
) -> dict[str, int]:
    async with _office(container, queue) as office:
        outcome = await office.replay(
            queue,
            request.selection(),
            limit=request.limit,
            rate=request.rate,
            dry_run=request.dry_run,
            route=ReplayTarget(request.route),
        )
    return {"matched": outcome.matched, "replayed": outcome.replayed}


@router.delete("/{queue}/messages/{message_id}", status_code=status.HTTP_204_NO_CONTENT)
async def drop_dead_letter(
    queue: str, message_id: str, admin: AdminUser, container: ContainerDep
) -> Response:
    async with _office(container, queue) as office:
        dropped = await office.drop(queue, Filter(message_ids=frozenset({message_id})))
    if dropped == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no message {message_id} in {queue}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
