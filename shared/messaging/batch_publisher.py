"""Confirmed publishing of many messages in one write on an aiormq channel (a replay's hot path).

aiormq's ``basic_publish`` handles one message per call: it takes the
channel lock, arms a timeout, marshals the frames, hands them to the
connection's writer (one socket write each) and waits for that message's
confirm, so N copies in flight cost N tasks contending for one lock. A
py-spy profile of a store replay found most of its process there.
:meth:`BatchPublisher.send` does those steps once for a whole batch: under
the channel's lock it numbers the messages and registers a confirmation
future for each exactly as ``basic_publish`` does, then queues all their
frames as one write. aiormq's own reader settles each future: ``basic.ack``
(single or ``multiple``), ``basic.nack`` or ``basic.return`` (every copy is
``mandatory``). The futures are plain ones, not registered with aiormq's
future store (that costs several callbacks a message); instead
:meth:`BatchPublisher.confirmed` waits beside them on one registered future,
which the channel closing rejects, and then counts the unanswered as not
confirmed.

Only public attributes of aiormq's ``Channel`` are used (``lock``,
``delivery_tag``, ``confirmations``, ``message_id_delivery_tag``,
``write_queue``, ``max_content_size``, ``create_future``, ``loop``); a test
publishes, gets confirms, returns and a closed channel through it against a
real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from random import getrandbits
from uuid import UUID

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from shared.messaging.publisher import CONFIRM_TIMEOUT_S

Confirmation = asyncio.Future[object]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to publish: where to, its AMQP properties (persistence included), its body."""

    exchange: str
    routing_key: str
    properties: spec.Basic.Properties
    body: bytes


class BatchPublisher:
    """Publishes batches on one channel opened with publisher confirms; each message mandatory."""

    def __init__(self, channel: aiormq.Channel) -> None:
        if not channel.publisher_confirms:
            raise ValueError("the channel must be opened with publisher confirms")
        self._channel = channel
        #: one method frame per route: a frame is only read when marshalled, and
        #: building one validates the exchange name with a regular expression
        self._publish_frames: dict[tuple[str, str], spec.Basic.Publish] = {}

    async def send(self, messages: Sequence[OutgoingMessage]) -> list[Confirmation]:
        """Queue every message in one write; one confirmation future each, in order.

        Returns once the frames are queued for the socket. A future resolves
        to ``basic.ack`` when the broker took the message; it fails (or
        resolves to the returned message) when it did not. If this call
        raises, nothing of the batch was queued.
        """
        channel = self._channel
        frames: list[spec.Basic.Publish | ContentHeader | ContentBody] = []
        confirmations: list[Confirmation] = []
        async with channel.lock:
            first_tag = channel.delivery_tag
            try:
                for message in messages:
                    confirmations.append(self._number(message))
                    frames.append(self._publish_frame(message.exchange, message.routing_key))
                    frames.append(
                        ContentHeader(body_size=len(message.body), properties=message.properties)
                    )
                    frames.extend(self._body_frames(message.body))
                await channel.write_queue.put(
                    ChannelFrame.marshall(channel_number=channel.number, frames=frames)
                )
            except BaseException:
                # Nothing reached the writer: give the numbers back, as basic_publish does.
                for tag in range(first_tag + 1, channel.delivery_tag + 1):
                    channel.confirmations.pop(tag, None)
                channel.delivery_tag = first_tag
                for confirmation in confirmations:
                    confirmation.cancel()
                raise
        return confirmations

    def _number(self, message: OutgoingMessage) -> Confirmation:
        channel = self._channel
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        if not message.properties.message_id:
            # a return is matched to its publish by message id
            message.properties.message_id = UUID(int=getrandbits(128), version=4).hex
        message_id = message.properties.message_id
        confirmation: Confirmation = channel.loop.create_future()
        channel.confirmations[tag] = confirmation
        channel.message_id_delivery_tag[message_id] = tag

        def forget_message_id(_: Confirmation) -> None:
            if channel.message_id_delivery_tag.get(message_id) == tag:
                channel.message_id_delivery_tag.pop(message_id)

        confirmation.add_done_callback(forget_message_id)
        return confirmation

    def _publish_frame(self, exchange: str, routing_key: str) -> spec.Basic.Publish:
        frame = self._publish_frames.get((exchange, routing_key))
        if frame is None:
            frame = spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=True)
            self._publish_frames[exchange, routing_key] = frame
        return frame

    async def confirmed(
        self, confirmations: Sequence[Confirmation], *, within: float = CONFIRM_TIMEOUT_S
    ) -> list[bool]:
        """Wait for the broker's answers; for each message, whether it was confirmed.

        A message not answered ``within`` seconds, or before the channel
        closed, counts as not confirmed: its future is cancelled, so a late
        answer is ignored. Leaving early (cancelled) cancels them too.
        """
        closed = self._channel.create_future()  # rejected by aiormq when the channel closes
        answered = _all_done(confirmations)
        try:
            await asyncio.wait(
                {answered, closed}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
            for confirmation in confirmations:
                confirmation.cancel()  # no-op for the answered ones
            answered.cancel()
        return [_acked(c) for c in confirmations]

    def _body_frames(self, body: bytes) -> list[ContentBody]:
        size = self._channel.max_content_size
        if len(body) <= size:
            return [ContentBody(body)] if body else []
        return [ContentBody(body[start : start + size]) for start in range(0, len(body), size)]


def _all_done(confirmations: Sequence[Confirmation]) -> asyncio.Future[None]:
    """A future done when every confirmation is (``gather`` without its per-future checks)."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    remaining = len(confirmations)

    def one_done(_: Confirmation) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 and not done.done():
            done.set_result(None)

    if remaining == 0:
        done.set_result(None)
    for confirmation in confirmations:
        confirmation.add_done_callback(one_done)
    return done


def _acked(confirmation: Confirmation) -> bool:
    if confirmation.cancelled() or confirmation.exception() is not None:
        return False
    return isinstance(confirmation.result(), spec.Basic.Ack)


def refusal(confirmations: Sequence[Confirmation]) -> str | None:
    """Why the first message the broker did not confirm was refused, or None."""
    for confirmation in confirmations:
        if confirmation.cancelled():
            return "no confirm (timed out, or the channel closed)"
        if (error := confirmation.exception()) is not None:
            return str(error) or repr(error)
        if not isinstance(result := confirmation.result(), spec.Basic.Ack):
            return f"not confirmed ({result!r})"
    return None
