"""Composition root of the push consumer: its adapters, built here and closed here.

The database pools (the inbox's; the subscriptions' and delivery ledger's) and
the HTTP connections to the push services are the real defaults, built inside :func:`bootstrap`;
a test passes its own ``pool`` or ``sender``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg

from push_consumer.config import Settings
from push_consumer.handler import PushHandlers, push_failed
from push_consumer.store import PostgresSubscriptionStore, store_pool
from push_consumer.vapid import VapidAuthorizations, generate_private_key, load_private_key
from push_consumer.webpush import WebPushSender
from shared.messaging.topology import PUSH_COMMANDS, PUSH_RSVP_EVENTS
from shared.schemas import PushSend, RsvpMessage
from shared.service.consumer import ConsumerService, consumer_runtime, inbox_pool

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
async def bootstrap(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    sender: WebPushSender | None = None,
) -> AsyncIterator[ConsumerService]:
    """The consumer, subscribed and ready to run; what it opened closes on exit."""
    async with AsyncExitStack() as opened:
        if pool is None:
            pool = await opened.enter_async_context(inbox_pool(settings, spare=0))
            # the handler's own queries (subscriptions, ledger) take a connection
            # for a moment besides the one its claim holds, from a pool of their own
            store = await opened.enter_async_context(
                store_pool(
                    settings.asyncpg_dsn,
                    acquire_timeout_s=settings.db_pool_timeout_s,
                    server_settings=settings.db_server_settings,
                    connect_timeout_s=settings.db_connect_timeout_s,
                )
            )
        else:
            store = pool
        if sender is None:
            sender = WebPushSender(
                vapid_authorizations(settings),
                timeout_s=settings.push_timeout_s,
                max_connections=settings.push_max_connections,
                # dev's push service is on 127.0.0.1; prod pushes go to the internet only
                public_only=settings.app_env == "prod",
            )
            opened.push_async_callback(sender.aclose)
        runtime = consumer_runtime(NAME, "push_consumer", settings, pool)
        handlers = PushHandlers(
            PostgresSubscriptionStore(store, ledger=NAME),
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
        yield ConsumerService(runtime)
