"""`python -m calendar_service.delivery_reports`: record what the consumers report.

Consumes ``calendar.followups`` on the shared runtime. A
``push.subscription_expired`` deletes the subscription (the push consumer
never writes the calendar's tables). Each delivery report is applied
with "never regress" rules (see ``NotificationStatuses.record``): a report about an
older RSVP version, or a worse one for the same version, changes nothing, so
follow-ups may arrive late, twice, or out of order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import CALENDAR_FOLLOWUPS
from shared.schemas import (
    DeliveryOutcome,
    EmailFailed,
    EmailSent,
    Envelope,
    FollowUpMessage,
    PushFailed,
    PushSent,
    PushSubscriptionExpired,
)
from shared.service.consumer import ConsumerService
from shared.service.process import run_service

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
    """Apply one follow-up to what it reports on; publishes nothing further.

    A confirmation moves the RSVP's delivery status, an announcement its
    recipient's row (the announcement's progress counts); a reminder has no
    status to show and is only logged.
    """
    if isinstance(message, PushSubscriptionExpired):
        await forget_subscription(engine, message)
        return ()
    report = delivery_report(message)
    data = message.data
    if report is None or not isinstance(data, DeliveryOutcome):
        log.debug("follow-up %s carries no delivery status", message.type)
        return ()
    channel, status, detail = report
    async with UnitOfWork(engine) as uow:
        if data.kind == "announcement" and data.announcement_id is not None:
            applied = await uow.announcements.record(
                data.announcement_id, data.user_id, channel, status
            )
        elif data.kind == "confirmation" and data.rsvp_id is not None:
            applied = await uow.notifications.record(
                rsvp_id=data.rsvp_id,
                channel=channel,
                status=status,
                rsvp_version=data.rsvp_version or 0,
                detail=detail,
            )
        else:
            log.info("%s %s for user %s", data.kind, message.type, data.user_id)
            return ()
        await uow.commit()
    if not applied:
        log.info("stale %s about %s ignored", message.type, data.source_message_id)
    return ()


async def forget_subscription(engine: AsyncEngine, message: PushSubscriptionExpired) -> None:
    """Delete a subscription its push service called gone; a repeat finds nothing to do."""
    expired = message.data
    async with UnitOfWork(engine) as uow:
        removed = await uow.subscriptions.remove_expired(
            expired.subscription_id, endpoint=expired.endpoint
        )
        await uow.commit()
    log.info(
        "push subscription %s %s (push service answered %d)",
        expired.subscription_id,
        "deleted" if removed else "was already gone",
        expired.status_code,
        extra={"user_id": str(expired.user_id)},
    )


#: Follow-ups handled at once: each is a short transaction on the engine's
#: pool; the inbox claims and records of all of them share two connections.
CONCURRENCY = 8


def build_runtime(
    settings: Settings, engine: AsyncEngine, pool: asyncpg.Pool, *, metrics_port: int | None
) -> ConsumerRuntime:
    """The runtime consuming ``calendar.followups`` into ``engine``'s database."""
    runtime = ConsumerRuntime(
        "calendar",
        settings.amqp_url,
        inbox=PostgresInbox(pool),
        producer="calendar_service",
        metrics_port=metrics_port,
        concurrency=CONCURRENCY,
    )

    async def handle(message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        return await record_delivery(engine, message)

    runtime.subscribe(CALENDAR_FOLLOWUPS, handle, accepts=FollowUpMessage)
    return runtime


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    pool: asyncpg.Pool | None = None,
    metrics_port: int | None = None,
) -> AsyncIterator[ConsumerService]:
    """The consumer, subscribed and ready to run; the engine and pool it built close on exit."""
    async with AsyncExitStack() as opened:
        if engine is None:
            engine = create_engine(settings)
            opened.push_async_callback(engine.dispose)
        if pool is None:
            # the inbox batches every claim and record onto two connections
            pool = await asyncpg.create_pool(settings.asyncpg_dsn, min_size=1, max_size=3)
            opened.push_async_callback(pool.close)
        yield ConsumerService(build_runtime(settings, engine, pool, metrics_port=metrics_port))


def main() -> None:
    settings = Settings()
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    # the consumer runtime serves its own health, on this port
    run_service("reports", settings, lambda: bootstrap(settings, metrics_port=port))


if __name__ == "__main__":
    main()
