"""``python -m bench.sink PORT N``: an aiosmtpd server that times N mails, then exits.

It reports progress and, once N mails have arrived, the rate from the first
to the last, and how many distinct ``Message-ID`` s came (lost or duplicated
mails show up there). Nothing is parsed: the benchmark measures the sender.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller

from bench.worker import Clock, say

_MESSAGE_ID = re.compile(rb"^Message-ID: (\S+)", re.MULTILINE | re.IGNORECASE)


class TimingHandler:
    def __init__(self, expected: int) -> None:
        self.clock = Clock()
        self.ids: Counter[bytes] = Counter()
        self.all_arrived = threading.Event()
        self._expected = expected

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.clock.tick()
        found = _MESSAGE_ID.search(envelope.original_content or b"")
        self.ids[found.group(1) if found else b""] += 1
        if self.clock.count >= self._expected:
            self.all_arrived.set()
        return "250 OK"


def main() -> None:
    port, expected = int(sys.argv[1]), int(sys.argv[2])
    handler = TimingHandler(expected)
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="sink")
    controller.start()
    say(listening=port)
    try:
        handler.all_arrived.wait()
    finally:
        controller.stop()
    duplicated = sum(copies - 1 for copies in handler.ids.values())
    say(result=handler.clock.result(distinct=len(handler.ids), duplicated=duplicated))


if __name__ == "__main__":
    main()
