"""``python -m bench.push_baseline TARGETS CONCURRENCY``: the push work with no broker, no database.

The baseline of ``bench.push_consumer_throughput``: for each subscription in
the JSON file TARGETS (``[{id, endpoint, p256dh, auth}, …]``), the same
notification is built, encrypted, VAPID-signed and POSTed by the same
:class:`~push_consumer.webpush.WebPushSender` the consumer uses, CONCURRENCY
at a time, as the consumer would; no broker, no inbox, no subscription
read, no follow-up. The push sink's arrivals time it, exactly as they time
the consumer. The VAPID key comes from ``VAPID_PRIVATE_KEY``, as for the consumer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import uvloop

from push_consumer.bootstrap import vapid_authorizations
from push_consumer.config import Settings
from push_consumer.notification import notification_for
from push_consumer.webpush import PushTarget, WebPushSender
from tests.support.messages import rsvp_created


async def push_all(targets: list[PushTarget], concurrency: int) -> None:
    settings = Settings()
    slots = asyncio.Semaphore(concurrency)
    sender = WebPushSender(
        vapid_authorizations(settings),
        timeout_s=settings.push_timeout_s,
        max_connections=settings.push_max_connections,
    )
    batch = [rsvp_created() for _ in targets]  # made before the first push

    async def build_and_push(target: PushTarget, index: int) -> None:
        async with slots:
            message = batch[index]
            notification, urgency = notification_for(message, settings.app_url)
            await sender.send(
                target,
                notification.to_bytes(),
                ttl_s=settings.push_ttl_s,
                urgency=urgency,
                topic=message.message_id.hex,
            )

    try:
        await asyncio.gather(*(build_and_push(t, i) for i, t in enumerate(targets)))
    finally:
        await sender.aclose()


def load_targets(path: Path) -> list[PushTarget]:
    return [
        PushTarget(uuid.UUID(t["id"]), t["endpoint"], t["p256dh"], t["auth"])
        for t in json.loads(path.read_text())
    ]


if __name__ == "__main__":
    uvloop.run(push_all(load_targets(Path(sys.argv[1])), int(sys.argv[2])))
