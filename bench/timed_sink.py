"""`python -m bench.timed_sink PORT`: an SMTP sink in a process of its own that says when mail came.

Accepts everything and writes one line per mail to stdout, ``<unix time>
<recipient>``, for the benchmark reading it. Nothing is parsed or kept: the
sink must cost the 2 shared cores as little as a mail server can.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from aiosmtpd.controller import Controller


class TimedHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sys.stdout.write(f"{time.time():.6f} {' '.join(envelope.rcpt_tos)}\n")
        sys.stdout.flush()
        return "250 OK"


async def serve(port: int) -> None:
    controller = Controller(TimedHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
