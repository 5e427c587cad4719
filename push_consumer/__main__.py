"""`python -m push_consumer`: send the Web Push notifications of ``push.rsvp_events`` and
``push.commands``.

Start-up and shut-down in one place: the database pool (inbox, subscriptions,
delivery ledger), the HTTP client to the push services and the runtime are
opened here and closed here. Run as many processes as you like: they compete
for the same queues.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import uvloop

from push_consumer.config import Settings
from push_consumer.handler import PushHandlers, push_failed
from push_consumer.store import SubscriptionStore
from push_consumer.vapid import (
    VapidAuthorizations,
    generate_private_key,
    load_private_key,
)
from push_consumer.webpush import WebPushSender
from shared.logs import configure_logging
from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import PUSH_COMMANDS, PUSH_RSVP_EVENTS
from shared.schemas import PushSend, RsvpMessage

log = logging.getLogger(__name__)

#: The runtime's name: labels metrics, prefixes inbox keys, keys the delivery ledger.
NAME = "push"


def vapid_authorizations(settings: Settings) -> VapidAuthorizations:
    """The VAPID signer: the configured key, or (outside prod) a throw-away one."""
    if settings.vapid_private_key is not None:
        key = load_private_key(settings.vapid_private_key)
    else:
        key = generate_private_key()
        log.warning(
            "VAPID_PRIVATE_KEY is not set: using a throw-away key for this run. "
            "Browsers subscribed with another key will refuse these pushes; "
            "`make vapid-keys` makes a lasting one."
        )
    vapid = VapidAuthorizations(key, settings.vapid_subject)
    log.info("VAPID application server key: %s", vapid.public_key)
    return vapid


@asynccontextmanager
async def push_runtime(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[ConsumerRuntime]:
    """The consumer's runtime, subscribed and ready to run; its pool and client close on exit."""
    # a claim holds a connection while its handler runs; the handler's own
    # queries (subscriptions, ledger) take a second one for a moment
    pool = await asyncpg.create_pool(
        settings.asyncpg_dsn, min_size=2, max_size=settings.concurrency + 4
    )
    sender = WebPushSender(
        vapid_authorizations(settings),
        timeout_s=settings.push_timeout_s,
        max_connections=settings.push_max_connections,
        transport=transport,
    )
    try:
        runtime = ConsumerRuntime(
            NAME,
            settings.amqp_url,
            inbox=PostgresInbox(pool),
            producer="push_consumer",
            prefetch=settings.prefetch,
            concurrency=settings.concurrency,
            metrics_port=settings.metrics_port,
        )
        handlers = PushHandlers(
            SubscriptionStore(pool, ledger=NAME),
            sender,
            app_url=settings.app_url,
            ttl_s=settings.push_ttl_s,
        )
        runtime.subscribe(
            PUSH_RSVP_EVENTS,
            handlers.on_rsvp_event,
            accepts=RsvpMessage,
            on_dead_letter=push_failed,
        )
        runtime.subscribe(
            PUSH_COMMANDS, handlers.on_command, accepts=PushSend, on_dead_letter=push_failed
        )
        yield runtime
    finally:
        await sender.aclose()
        await pool.close()


async def run(settings: Settings) -> None:
    async with push_runtime(settings) as runtime:
        await runtime.run_forever()


def main() -> None:
    settings = Settings()
    configure_logging("push", settings.log_level, settings.log_format)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
