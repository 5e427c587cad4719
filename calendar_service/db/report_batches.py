"""The consumers' delivery reports applied many at a time, in set-based SQL on asyncpg.

The follow-up consumer applies a batch of reports in one transaction: one
statement per table, whatever the batch size. These are the "never
regress" rules of the delivery status, in SQL: a report about an older
RSVP version, or a worse one (``NOTIFICATION_RANK``) for the same version,
changes nothing, so follow-ups may arrive late, twice, or out of order.
Reports about the same row within one batch are first reduced to the one
that would have won had they come one by one (a row may be changed only
once per statement).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from calendar_service.domain import NOTIFICATION_RANK
from shared.messaging.inbox import record_handled_sql

if TYPE_CHECKING:
    import asyncpg

    Connection = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )


def _rank_sql(status: str) -> str:
    """``NOTIFICATION_RANK`` of a status column, as a SQL expression."""
    whens = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in NOTIFICATION_RANK.items())
    return f"(CASE {status} {whens} ELSE 0 END)"


# only our own rank constants are formatted into these two
_RECORD_STATUSES = f"""
INSERT INTO delivery_status AS s (rsvp_id, channel, status, rsvp_version, detail)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[])
ON CONFLICT (rsvp_id, channel) DO UPDATE
SET status = excluded.status, rsvp_version = excluded.rsvp_version,
    detail = excluded.detail, updated_at = now()
WHERE s.rsvp_version < excluded.rsvp_version
   OR (s.rsvp_version = excluded.rsvp_version
       AND {_rank_sql("s.status")} <= {_rank_sql("excluded.status")})
RETURNING s.rsvp_id, s.channel
"""  # noqa: S608

# the same, and the inbox records of the batch's messages, in one statement
_RECORD_STATUSES_AND_HANDLED = f"WITH handled AS ({record_handled_sql(6, 7)})" + _RECORD_STATUSES

_RECORD_ANNOUNCEMENT_DELIVERIES = f"""
UPDATE announcement_deliveries AS d SET status = r.status, updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS r(announcement_id, user_id,
                                                                channel, status)
WHERE d.announcement_id = r.announcement_id AND d.user_id = r.user_id
  AND d.channel = r.channel AND {_rank_sql("d.status")} <= {_rank_sql("r.status")}
RETURNING d.announcement_id, d.user_id, d.channel
"""  # noqa: S608

_REMOVE_EXPIRED_SUBSCRIPTIONS = """
DELETE FROM push_subscriptions AS s USING unnest($1::uuid[], $2::text[]) AS r(id, endpoint)
WHERE s.id = r.id AND s.endpoint = r.endpoint
RETURNING s.id
"""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """What a consumer reported about one RSVP's notification on one channel."""

    rsvp_id: uuid.UUID
    channel: str
    status: str
    rsvp_version: int
    detail: str | None

    @property
    def row(self) -> tuple[uuid.UUID, str]:
        return self.rsvp_id, self.channel

    @property
    def standing(self) -> tuple[int, int]:
        return self.rsvp_version, NOTIFICATION_RANK[self.status]


@dataclass(frozen=True, slots=True)
class AnnouncementReport:
    """What a consumer reported about one announcement recipient on one channel."""

    announcement_id: uuid.UUID
    user_id: uuid.UUID
    channel: str
    status: str

    @property
    def row(self) -> tuple[uuid.UUID, uuid.UUID, str]:
        return self.announcement_id, self.user_id, self.channel

    @property
    def standing(self) -> int:
        return NOTIFICATION_RANK[self.status]


R = TypeVar("R", StatusReport, AnnouncementReport)

#: (the consumer's inbox key, ids of the messages it applied): what it records.
Handled = tuple[str, list[uuid.UUID]]
_RECORD_HANDLED = record_handled_sql(1, 2)


def _winners(reports: Iterable[R]) -> list[R]:
    """Per row, the report applying them in order would leave: the best, the last of equals."""
    best: dict[object, R] = {}
    for report in reports:
        held = best.get(report.row)
        if held is None or report.standing >= held.standing:
            best[report.row] = report
    return list(best.values())


async def record_statuses(
    connection: Connection,
    reports: Iterable[StatusReport],
    *,
    handled: Handled | None = None,
) -> set[tuple[uuid.UUID, str]]:
    """Apply the reports that do not regress; the (rsvp, channel) rows they changed.

    With ``handled``, the same statement records those messages in the
    consumer's inbox (nothing is applied, nothing recorded, without reports).
    """
    winners = _winners(reports)
    if not winners:
        return set()
    columns = (
        [r.rsvp_id for r in winners],
        [r.channel for r in winners],
        [r.status for r in winners],
        [r.rsvp_version for r in winners],
        [r.detail for r in winners],
    )
    if handled is None:
        rows = await connection.fetch(_RECORD_STATUSES, *columns)
    else:
        rows = await connection.fetch(_RECORD_STATUSES_AND_HANDLED, *columns, *handled)
    return {(row["rsvp_id"], row["channel"]) for row in rows}


async def record_handled(connection: Connection, handled: Handled) -> None:
    """Record messages in the consumer's inbox, as a statement of their own."""
    await connection.execute(_RECORD_HANDLED, *handled)


async def record_announcement_deliveries(
    connection: Connection, reports: Iterable[AnnouncementReport]
) -> set[tuple[uuid.UUID, uuid.UUID, str]]:
    """Apply the reports that are not worse than what is stored; the rows they changed."""
    winners = _winners(reports)
    if not winners:
        return set()
    rows = await connection.fetch(
        _RECORD_ANNOUNCEMENT_DELIVERIES,
        [r.announcement_id for r in winners],
        [r.user_id for r in winners],
        [r.channel for r in winners],
        [r.status for r in winners],
    )
    return {(row["announcement_id"], row["user_id"], row["channel"]) for row in rows}


async def remove_expired_subscriptions(
    connection: Connection, expired: Iterable[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Delete subscriptions (id, endpoint) a push service called gone; the ids deleted.

    The endpoint must still match, so a report cannot delete a row that was
    meanwhile subscribed again with other details.
    """
    pairs = list(expired)
    if not pairs:
        return set()
    rows = await connection.fetch(
        _REMOVE_EXPIRED_SUBSCRIPTIONS, [p[0] for p in pairs], [p[1] for p in pairs]
    )
    return {row["id"] for row in rows}
