"""``python -m bench.email_baseline N PORT POOL CONCURRENCY``: the email work with no broker.

The B3 baseline (bench.md): the same ``Renderer`` builds the same email for
each of N ``rsvp.created`` messages, and the same ``SmtpMailer`` sends it over
POOL connections, CONCURRENCY at a time, as the consumer would; no broker, no
inbox, no follow-up. The SMTP sink times it, exactly as it times the consumer.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from email_consumer.config import Settings
from email_consumer.mailer import SmtpMailer
from email_consumer.render import Renderer
from tests.support.messages import rsvp_created


async def send_all(messages: int, port: int, pool: int, concurrency: int) -> None:
    renderer = Renderer(Settings.model_fields["mail_from"].default)
    batch = [rsvp_created() for _ in range(messages)]  # made before the first send
    slots = asyncio.Semaphore(concurrency)

    async with SmtpMailer("127.0.0.1", port, pool_size=pool) as mailer:

        async def build_and_send(index: int) -> None:
            async with slots:
                await mailer.send(renderer.for_rsvp(batch[index]))

        await asyncio.gather(*(build_and_send(i) for i in range(messages)))


if __name__ == "__main__":
    count, port, pool, concurrency = (int(arg) for arg in sys.argv[1:5])
    uvloop.run(send_all(count, port, pool, concurrency))
