"""The audit log's write side for the calendar's own changes (role grants and revokes).

The same ``audit_log`` table the dead-letter store writes (``shared/dlq/audit.py``)
and ``GET /admin/audit`` reads; a row joins the transaction of the change it records.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import text

from calendar_service.db.repositories import Repository

_RECORD = text(
    "INSERT INTO audit_log (actor, action, target, detail)"
    " VALUES (:actor, :action, :target, CAST(:detail AS jsonb))"
)


class AuditLog(Repository):
    async def record(self, *, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        await self.connection.execute(
            _RECORD,
            {
                "actor": actor,
                "action": action,
                "target": target,
                "detail": orjson.dumps(detail).decode(),
            },
        )
