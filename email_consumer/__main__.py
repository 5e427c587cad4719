"""`python -m email_consumer`: send the emails of ``email.rsvp_events`` and ``email.commands``.

Start-up and shut-down in one place: the database pool (inbox), the SMTP
connections and the runtime are opened here and closed here. Run as many
processes as you like: they compete for the same queues.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvloop

from email_consumer.config import Settings
from email_consumer.handler import EmailHandlers, email_failed
from email_consumer.mailer import SmtpMailer
from email_consumer.render import Renderer
from shared.logs import configure_logging
from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import EMAIL_COMMANDS, EMAIL_RSVP_EVENTS
from shared.schemas import EmailSend, RsvpMessage


@asynccontextmanager
async def email_runtime(settings: Settings) -> AsyncIterator[ConsumerRuntime]:
    """The consumer's runtime, subscribed and ready to run; its pools close on exit."""
    # a claim holds a connection while its handler runs: one per concurrent message
    pool = await asyncpg.create_pool(
        settings.asyncpg_dsn, min_size=2, max_size=settings.concurrency + 2
    )
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        pool_size=settings.smtp_pool_size,
    )
    try:
        runtime = ConsumerRuntime(
            "email",
            settings.amqp_url,
            inbox=PostgresInbox(pool),
            producer="email_consumer",
            prefetch=settings.prefetch,
            concurrency=settings.concurrency,
            metrics_port=settings.metrics_port,
        )
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
        yield runtime
    finally:
        await mailer.aclose()
        await pool.close()


async def run(settings: Settings) -> None:
    async with email_runtime(settings) as runtime:
        await runtime.run_forever()


def main() -> None:
    settings = Settings()
    configure_logging("email", settings.log_level, settings.log_format)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
