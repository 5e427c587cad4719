"""Composition root of the email consumer: its adapters, built here and closed here.

Real adapters are the defaults, built inside :func:`bootstrap` (never at
import); a test passes a fake ``mailer`` or its own ``pool`` through the same door.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg

from email_consumer.config import Settings
from email_consumer.handler import EmailHandlers, email_failed
from email_consumer.mailer import Mailer, SmtpMailer
from email_consumer.render import Renderer
from shared.messaging.topology import EMAIL_COMMANDS, EMAIL_RSVP_EVENTS
from shared.schemas import EmailSend, RsvpMessage
from shared.service.consumer import ConsumerService, consumer_runtime, inbox_pool


def smtp_mailer(settings: Settings) -> SmtpMailer:
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        timeout=settings.smtp_timeout_s,
        pool_size=settings.smtp_pool_size,
    )


@asynccontextmanager
async def bootstrap(
    settings: Settings, *, pool: asyncpg.Pool | None = None, mailer: Mailer | None = None
) -> AsyncIterator[ConsumerService]:
    """The consumer, subscribed and ready to run; what it opened closes on exit."""
    async with AsyncExitStack() as opened:
        if pool is None:
            pool = await opened.enter_async_context(inbox_pool(settings, spare=2))
        if mailer is None:
            mailer = smtp_mailer(settings)
            opened.push_async_callback(mailer.aclose)
        runtime = consumer_runtime("email", "email_consumer", settings, pool)
        handlers = EmailHandlers(Renderer(settings.mail_from), mailer)
        runtime.subscribe(
            EMAIL_RSVP_EVENTS,
            handlers.on_rsvp_event,
            accepts=RsvpMessage,
            on_dead_letter=email_failed,
        )
        runtime.subscribe(
            EMAIL_COMMANDS, handlers.on_command, accepts=EmailSend, on_dead_letter=email_failed
        )
        yield ConsumerService(runtime)
