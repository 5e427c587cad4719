"""The read side of the dead-letter store: filtered keyset pages, failure groups, counts.

Every query here is served by an index of migration 0010 (a test reads their
plans): a page walks ``id`` within the most selective of ``(queue, state,
id)``, ``(group_key, state, id)`` and friends; free text uses the trigram
index on the exception message; the groups come from the small
trigger-kept ``dead_letter_groups`` table, not from counting a million rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

import asyncpg
import orjson

from shared.dlq.selection import DeadLetter
from shared.dlq.views import letter_as_dict

State = Literal["dead", "replayed", "deleted"]
STATES: tuple[State, ...] = ("dead", "replayed", "deleted")
#: Longest page a caller may ask for.
MAX_PAGE = 200


#: Where a query runs: the pool, or a connection taken from it for a transaction.
Db: TypeAlias = (
    "asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)


class BadCursor(ValueError):
    """A cursor the store did not hand out."""


@dataclass(frozen=True)
class StoreFilter:
    """Which stored dead letters an operator picked; empty picks every one.

    ``since`` is inclusive and ``until`` exclusive on the failure time; ``q``
    is free text in the exception message (case-insensitive).
    """

    ids: Sequence[int] = ()
    queue: str | None = None
    type: str | None = None
    reason: str | None = None
    exception_type: str | None = None
    group: str | None = None
    message_ids: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    state: State | None = None
    q: str | None = None

    def where(self, args: list[Any]) -> str:
        """The SQL condition of this filter; its values are appended to ``args``."""
        conditions = ["true"]

        def condition(sql: str, value: Any) -> None:
            args.append(value)
            conditions.append(sql.format(f"${len(args)}"))

        if self.ids:
            condition("id = ANY({}::bigint[])", list(self.ids))
        for column in ("queue", "type", "reason", "exception_type", "state"):
            if (value := getattr(self, column)) is not None:
                condition(f"{column} = {{}}", value)
        if self.group is not None:
            condition("group_key = {}", self.group)
        if self.message_ids:
            condition("message_id = ANY({}::text[])", list(self.message_ids))
        if self.since is not None:
            condition("failed_at >= {}", self.since)
        if self.until is not None:
            condition("failed_at < {}", self.until)
        if self.q:
            escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            condition("exception_message ILIKE {}", f"%{escaped}%")
        return " AND ".join(conditions)

    def as_json(self) -> dict[str, Any]:
        """The filter as the audit log and a replay's record keep it (only what was set)."""
        values = {
            "ids": list(self.ids),
            "queue": self.queue,
            "type": self.type,
            "reason": self.reason,
            "exception_type": self.exception_type,
            "group": self.group,
            "message_ids": list(self.message_ids),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "state": self.state,
            "q": self.q,
        }
        return {k: v for k, v in values.items() if v not in (None, [])}


@dataclass(frozen=True)
class StoredLetter:
    """A row of the store: the dead letter's facts and what operators did with it."""

    id: int
    queue: str
    group: str
    state: State
    archived_at: datetime
    letter: DeadLetter
    properties: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self, *, with_content: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            **letter_as_dict(self.letter, with_content=with_content),
            "group": self.group,
            "state": self.state,
            "archived_at": self.archived_at.isoformat(),
        }


def stored_letter(row: asyncpg.Record) -> StoredLetter:
    letter = DeadLetter(
        message_id=row["message_id"],
        type=row["type"],
        reason=row["reason"],
        exception_type=row["exception_type"],
        exception_message=row["exception_message"],
        attempts=row["attempts"],
        failed_at=row["failed_at"],
        original_exchange=row["original_exchange"],
        original_routing_key=row["original_routing_key"],
        original_queue=row["original_queue"],
        replay_count=row["replay_count"],
        headers=orjson.loads(row["headers"]),
        body=row["body"],
    )
    return StoredLetter(
        id=row["id"],
        queue=row["queue"],
        group=row["group_key"],
        state=row["state"],
        archived_at=row["archived_at"],
        letter=letter,
        properties=orjson.loads(row["properties"]),
    )


@dataclass(frozen=True)
class Page:
    items: list[StoredLetter]
    next_cursor: str | None


#: A store cursor: the id of the last row seen (ASCII digits; a bigint, so 18 at most).
CURSOR_PATTERN = r"^[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _after(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not _CURSOR.fullmatch(cursor):
        raise BadCursor("malformed cursor")
    return int(cursor)


def page_query(selection: StoreFilter, limit: int, cursor: str | None) -> tuple[str, list[Any]]:
    args: list[Any] = [_after(cursor)]
    where = selection.where(args)
    args.append(limit + 1)
    return (
        # only placeholders are interpolated: every value is a bound argument
        f"SELECT * FROM dead_letters WHERE id > $1 AND {where} ORDER BY id LIMIT ${len(args)}",  # noqa: S608
        args,
    )


async def page(
    db: asyncpg.Pool, selection: StoreFilter, *, limit: int = 50, cursor: str | None = None
) -> Page:
    """One page of the picked letters, oldest first; ``next_cursor`` continues after it."""
    sql, args = page_query(selection, limit, cursor)
    rows = await db.fetch(sql, *args)
    items = [stored_letter(row) for row in rows[:limit]]
    return Page(items, str(items[-1].id) if len(rows) > limit else None)


async def count(db: Db, selection: StoreFilter, *, limit: int | None = None) -> int:
    """How many letters the filter picks (at most ``limit``)."""
    args: list[Any] = []
    where = selection.where(args)
    capped = f" LIMIT {int(limit)}" if limit is not None else ""
    return int(
        await db.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM dead_letters WHERE {where}{capped}) s",  # noqa: S608
            *args,
        )
    )


GROUPS = """
SELECT group_key, queue, type, exception_type, reason, sample_message, dead, total,
    first_failed_at, last_failed_at
FROM dead_letter_groups
WHERE dead > 0 AND ($1::text IS NULL OR queue = $1)
ORDER BY dead DESC, group_key
LIMIT $2
"""


def group_as_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "group": row["group_key"],
        "queue": row["queue"],
        "type": row["type"],
        "exception_type": row["exception_type"],
        "reason": row["reason"],
        "sample_message": row["sample_message"],
        "count": row["dead"],
        "total": row["total"],
        "first_failed_at": row["first_failed_at"].isoformat() if row["first_failed_at"] else None,
        "last_failed_at": row["last_failed_at"].isoformat() if row["last_failed_at"] else None,
    }


async def groups(
    db: asyncpg.Pool, *, queue: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The failure groups with dead letters still to act on, largest first."""
    return [group_as_dict(row) for row in await db.fetch(GROUPS, queue, limit)]


async def dead_per_queue(db: asyncpg.Pool) -> dict[str, int]:
    """Dead letters not yet replayed or deleted, per DLQ (summed from the groups)."""
    rows = await db.fetch(
        "SELECT queue, sum(dead)::int AS dead FROM dead_letter_groups GROUP BY queue"
    )
    return {row["queue"]: row["dead"] for row in rows}
