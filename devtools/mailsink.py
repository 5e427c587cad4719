"""`python -m devtools.mailsink`: a development SMTP server that logs every mail.

`make run` starts it unless SMTP_HOST points elsewhere; mails are kept in
memory only and summarised on stderr (To, Subject, parts).
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
        parts = [part.get_content_type() for part in message.walk() if not part.is_multipart()]
        log.info(
            "mail to %s: %s (%s)",
            ", ".join(envelope.rcpt_tos),
            message.get("Subject", "(no subject)"),
            ", ".join(parts),
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
    port = int(os.environ.get("SMTP_PORT", "1025"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve("127.0.0.1", port))


if __name__ == "__main__":
    main()
