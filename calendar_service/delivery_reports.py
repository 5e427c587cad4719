"""`python -m calendar_service.delivery_reports`: record what the consumers report.

Consumes ``calendar.followups`` on the shared runtime. A
``push.subscription_expired`` deletes the subscription (the push consumer
never writes the calendar's tables). Each delivery report is applied
with "never regress" rules (see ``calendar_service.db.report_batches``): a report about an
older RSVP version, or a worse one for the same version, changes nothing, so
follow-ups may arrive late, twice, or out of order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from typing import Any

import asyncpg

from calendar_service.config import Settings
from calendar_service.db.report_batches import (
    AnnouncementReport,
    StatusReport,
    record_announcement_deliveries,
    record_handled,
    record_statuses,
    remove_expired_subscriptions,
)
from shared.messaging.errors import NotAttempted
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
from shared.service.consumer import ConsumerService, nothing_to_reset
from shared.service.database import bounded_pool, database_unreachable
from shared.service.metrics import forget_pool, watch_pool
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


async def record_deliveries(
    pool: asyncpg.Pool, messages: Sequence[FollowUpMessage]
) -> list[Sequence[Envelope[Any]]]:
    """Apply the follow-ups that arrived together, in one transaction; publishes nothing further.

    The same transaction records them in the consumer's inbox: a message is
    on record exactly when its report was applied.

    A confirmation moves the RSVP's delivery status, an announcement its
    recipient's row (the announcement's progress counts), an expired
    subscription is deleted; a reminder has no status to show and is only
    logged. One statement per table, whatever the number of follow-ups.
    """
    statuses: list[tuple[StatusReport, Envelope[Any]]] = []
    announced: list[tuple[AnnouncementReport, Envelope[Any]]] = []
    expired: list[PushSubscriptionExpired] = []
    for message in messages:
        if isinstance(message, PushSubscriptionExpired):
            expired.append(message)
        elif (applied := _report_of(message)) is not None:
            if isinstance(applied, StatusReport):
                statuses.append((applied, message))
            else:
                announced.append((applied, message))
    try:
        # the inbox records of the batch go with the statuses, or alone when there are none
        handled = (INBOX_CONSUMER, [message.message_id for message in messages])
        async with pool.acquire() as connection:
            # one statement is atomic alone: no BEGIN and COMMIT round trips for it
            statements = 1 + bool(announced) + bool(expired)
            async with connection.transaction() if statements > 1 else nullcontext():
                if statuses:
                    changed = await record_statuses(
                        connection, (r for r, _ in statuses), handled=handled
                    )
                else:
                    changed = set()
                    await record_handled(connection, handled)
                changed_rows = await record_announcement_deliveries(
                    connection, (r for r, _ in announced)
                )
                removed = await remove_expired_subscriptions(
                    connection, ((m.data.subscription_id, m.data.endpoint) for m in expired)
                )
    except Exception as exc:
        # reports apply idempotently: with the database away, hold them, use no retry tier
        if database_unreachable(exc):
            raise NotAttempted(f"database unreachable: {exc!r}") from exc
        raise
    stale = [m for r, m in statuses if r.row not in changed]
    stale += [m for r, m in announced if r.row not in changed_rows]
    for ignored in stale:
        log.info("stale %s about %s ignored", ignored.type, ignored.data.source_message_id)
    for gone in expired:
        log.info(
            "push subscription %s %s (push service answered %d)",
            gone.data.subscription_id,
            "deleted" if gone.data.subscription_id in removed else "was already gone",
            gone.data.status_code,
            extra={"user_id": str(gone.data.user_id)},
        )
    return [() for _ in messages]


def _report_of(message: Envelope[Any]) -> StatusReport | AnnouncementReport | None:
    """The row a follow-up reports on, or None (logged) if it reports on none."""
    report = delivery_report(message)
    data = message.data
    if report is None or not isinstance(data, DeliveryOutcome):
        log.debug("follow-up %s carries no delivery status", message.type)
        return None
    channel, status, detail = report
    if data.kind == "announcement" and data.announcement_id is not None:
        return AnnouncementReport(data.announcement_id, data.user_id, channel, status)
    if data.kind == "confirmation" and data.rsvp_id is not None:
        return StatusReport(data.rsvp_id, channel, status, data.rsvp_version or 0, detail)
    log.info("%s %s for user %s", data.kind, message.type, data.user_id)
    return None


#: Follow-ups in flight at once, and so the largest batch: each batch is one
#: transaction, which also records its messages in the inbox.
CONCURRENCY = 64

RUNTIME_NAME = "calendar"
#: The inbox key of this consumer's messages, as the runtime names it.
INBOX_CONSUMER = f"{RUNTIME_NAME}/{CALENDAR_FOLLOWUPS.name}"

#: How long a batch waits for company. An RSVP's ``email.sent`` and
#: ``push.sent`` come from two consumers working on it at the same time, a
#: few milliseconds apart, so even 20 ms lets them share one statement; at
#: 100 ms the reports of a few RSVPs share it at 30 RSVP/s (B2: 1.9 -> 1.2 ms
#: of this process's CPU per RSVP, and its PostgreSQL backend's 0.55 -> 0.13),
#: at 250 ms those of about eight (with INBOX_GATHER_MS at 250 too, B2 at
#: 30/s: 0.82-1.0 -> 0.74-0.81 ms, its backend's 0.14-0.16 -> 0.08-0.10).
#: A status shows up to that much later; nothing is acked before it commits.
GATHER_S = 0.25


def build_runtime(
    settings: Settings, pool: asyncpg.Pool, *, metrics_port: int | None
) -> ConsumerRuntime:
    """The runtime consuming ``calendar.followups`` into the database of ``pool``."""
    runtime = ConsumerRuntime(
        RUNTIME_NAME,
        settings.amqp_url,
        # applying a report twice changes nothing (never regress): no claims
        # needed, and record_deliveries records what it applied itself
        inbox=PostgresInbox(pool, recorded_by_handler=True),
        producer="calendar_service",
        metrics_port=metrics_port,
        prefetch=2 * CONCURRENCY,
        concurrency=CONCURRENCY,
    )

    async def handle(messages: Sequence[FollowUpMessage]) -> list[Sequence[Envelope[Any]]]:
        return await record_deliveries(pool, messages)

    runtime.subscribe_batch(
        CALENDAR_FOLLOWUPS,
        handle,
        accepts=FollowUpMessage,
        max_batch=CONCURRENCY,
        max_wait_s=GATHER_S,
    )
    return runtime


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    metrics_port: int | None = None,
) -> AsyncIterator[ConsumerService]:
    """The consumer, subscribed and ready to run; the pool it built closes on exit."""
    async with AsyncExitStack() as opened:
        if pool is None:
            # the inbox batches every record onto one connection; the reports'
            # batches take others. Nothing here takes a lock or leaves a setting
            # behind, so connections go back without asyncpg's reset round trip.
            pool = await bounded_pool(
                settings.asyncpg_dsn,
                acquire_timeout_s=settings.db_pool_timeout_s,
                min_size=1,
                max_size=4,
                reset=nothing_to_reset,
                server_settings=settings.db_server_settings,
                timeout=settings.db_connect_timeout_s,
            )
            opened.push_async_callback(pool.close)
        watch_pool("reports", pool)
        opened.callback(forget_pool, "reports")
        yield ConsumerService(build_runtime(settings, pool, metrics_port=metrics_port))


def main() -> None:
    settings = Settings()
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    # the consumer runtime serves its own health, on this port
    run_service("reports", settings, lambda: bootstrap(settings, metrics_port=port))


if __name__ == "__main__":
    main()
