"""The audit log: who replayed, deleted or changed what, and when (design §3 ``/admin/audit``).

A row is written in the same transaction as the change it records where
there is one (a delete), and when the job is started for a replay, whose
counts are then kept on the replay's own row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from shared.dlq.queries import CURSOR_PATTERN, BadCursor, Db

RECORD = "INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4::jsonb)"
READ = """
SELECT id, at, actor, action, target, detail FROM audit_log
WHERE ($1::bigint IS NULL OR id < $1)
ORDER BY id DESC
LIMIT $2
"""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


async def record(
    db: Db,
    *,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    await db.execute(RECORD, actor, action, target, orjson.dumps(detail).decode())


async def entries(
    db: asyncpg.Pool, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[AuditEntry], str | None]:
    """Newest first; the cursor continues with older entries."""
    if cursor is not None and not re.fullmatch(CURSOR_PATTERN, cursor):
        raise BadCursor("malformed cursor")
    before = int(cursor) if cursor is not None else None
    rows = await db.fetch(READ, before, limit + 1)
    items = [
        AuditEntry(
            r["id"], r["at"], r["actor"], r["action"], r["target"], orjson.loads(r["detail"])
        )
        for r in rows[:limit]
    ]
    return items, str(items[-1].id) if len(rows) > limit else None
