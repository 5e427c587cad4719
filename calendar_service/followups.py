"""`python -m calendar_service.followups`: record what the consumers report.

Consumes ``calendar.followups`` on the shared runtime. Each report is applied
with "never regress" rules (see ``Deliveries.record``): a report about an
older RSVP version, or a worse one for the same version, changes nothing, so
follow-ups may arrive late, twice, or out of order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from shared.logs import configure_logging
from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import CALENDAR_FOLLOWUPS
from shared.schemas import (
    DeliveryOutcome,
    EmailFailed,
    EmailSent,
    Envelope,
    PushFailed,
    PushSent,
    PushSubscriptionExpired,
)

log = logging.getLogger(__name__)
DEFAULT_METRICS_PORT = 9102


def delivery_report(message: Envelope[Any]) -> tuple[str, str, str | None] | None:
    """(channel, status, detail) that a follow-up reports, or None if it reports none."""
    match message:
        case EmailSent():
            return "email", "sent", None
        case EmailFailed(data=data):
            return "email", "failed", f"{data.reason}: {data.error}"[:500]
        case PushSent(data=data):
            return "push", data.status, None
        case PushFailed(data=data):
            return "push", "failed", f"{data.reason}: {data.error}"[:500]
    return None


async def record_delivery(engine: AsyncEngine, message: Envelope[Any]) -> Sequence[Envelope[Any]]:
    """Apply one follow-up to the RSVP's delivery status; publishes nothing further."""
    if isinstance(message, PushSubscriptionExpired):
        log.info("push subscription expired", extra={"user_id": str(message.data.user_id)})
        return ()
    report = delivery_report(message)
    data = message.data
    if report is None or not isinstance(data, DeliveryOutcome) or data.rsvp_id is None:
        log.debug("follow-up %s carries no RSVP delivery status", message.type)
        return ()
    channel, status, detail = report
    async with UnitOfWork(engine) as uow:
        applied = await uow.deliveries.record(
            rsvp_id=data.rsvp_id,
            channel=channel,
            status=status,
            rsvp_version=data.rsvp_version or 0,
            detail=detail,
        )
        await uow.commit()
    if not applied:
        log.info("stale %s for RSVP %s ignored", message.type, data.rsvp_id)
    return ()


def build_runtime(
    settings: Settings, engine: AsyncEngine, pool: asyncpg.Pool, *, metrics_port: int | None
) -> ConsumerRuntime:
    runtime = ConsumerRuntime(
        "calendar",
        settings.amqp_url,
        inbox=PostgresInbox(pool),
        producer="calendar_service",
        metrics_port=metrics_port,
    )

    async def handle(message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        return await record_delivery(engine, message)

    runtime.subscribe(CALENDAR_FOLLOWUPS, handle)
    return runtime


async def run_followups(settings: Settings) -> None:
    engine = create_engine(settings)
    pool = await asyncpg.create_pool(settings.asyncpg_dsn, min_size=1, max_size=4)
    try:
        port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
        runtime = build_runtime(settings, engine, pool, metrics_port=port)
        await runtime.run_forever()
    finally:
        await pool.close()
        await engine.dispose()


def main() -> None:
    settings = Settings()
    configure_logging("followups", settings.log_level, settings.log_format)
    uvloop.run(run_followups(settings))


if __name__ == "__main__":
    main()
