"""`python -m devtools.mailsink`: a development SMTP server that logs every mail.

`make run` starts it unless SMTP_HOST points elsewhere; mails are kept in
memory only: each is one line on stderr (from, to, subject, size).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import os
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger("mailsink")


class LoggingHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        log.info(
            "mail from %s to %s: %s (%d bytes)",
            envelope.mail_from,
            ", ".join(envelope.rcpt_tos),
            message.get("Subject", "(no subject)"),
            len(envelope.content),
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int) -> None:
    controller = Controller(LoggingHandler(), hostname=host, port=port)
    controller.start()
    log.info("development SMTP sink listening on %s:%d", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


def main() -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)-5s %(message)s")
    # aiosmtpd logs every SMTP command of every session at INFO (about ten lines
    # a mail); our one line per mail says what a developer wants to know.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    port = int(os.environ.get("SMTP_PORT", "1025"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve("127.0.0.1", port))


if __name__ == "__main__":
    main()
