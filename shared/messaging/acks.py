"""Settling deliveries with as few frames as the channel allows.

Handlers in flight finish together (their follow-ups are confirmed by one
``basic.ack`` of the broker, their inbox records by one commit), so their
acks come in bursts. An ack asked for is sent on the next turn of the event
loop with every other ack asked for meanwhile: one ``basic.ack`` with
``multiple=True`` up to the highest of them whose earlier delivery tags on
the channel are all settled, one each for the rest. It waits no longer
than that turn (and the writing of the turn before), so a slow handler
holds back nothing but its own ack.

Only deliveries this runtime was given are on its channel, so "every
earlier tag settled" is known from :meth:`Acknowledger.delivered` and the
settlements that followed. A tag counts as settled only once its frame is
written, so a multiple ack can never overtake a nack and ack that message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from shared.messaging.codec import log_context

log = logging.getLogger(__name__)


@dataclass
class _ChannelAcks:
    """Deliveries on one channel not yet settled, and the acks waiting for the next turn."""

    channel: Any
    unsettled: set[int] = field(default_factory=set)
    #: Every tag up to this one was seen by :meth:`Acknowledger.delivered`: a
    #: multiple ack never reaches past it, so it cannot ack what we never saw.
    seen_up_to: int = 0
    seen_above: set[int] = field(default_factory=set)
    ready: list[tuple[AbstractIncomingMessage, asyncio.Future[None]]] = field(default_factory=list)


class Acknowledger:
    """Acks and returns the deliveries of one runtime's consuming channel(s)."""

    def __init__(self) -> None:
        self._channels: dict[int, _ChannelAcks] = {}
        self._flush: asyncio.Task[None] | None = None
        # one turn's frames at a time: a multiple ack computed while the frames of
        # the turn before are still being written could cover a tag acked twice
        self._sending = asyncio.Lock()

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Note a delivery the runtime now has to settle."""
        tag = message.delivery_tag
        if tag is None or _open_channel(message) is None:
            return
        acks = self._acks_of(message)
        acks.unsettled.add(tag)
        acks.seen_above.add(tag)
        while acks.seen_up_to + 1 in acks.seen_above:
            acks.seen_up_to += 1
            acks.seen_above.discard(acks.seen_up_to)

    async def ack(self, message: AbstractIncomingMessage) -> None:
        """Ack ``message`` with the acks of its neighbours; returns once it is sent."""
        if message.delivery_tag is None or _open_channel(message) is None:
            await _ack_one(message)  # nothing to coalesce with; it says why it failed
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks_of(message).ready.append((message, done))
        if self._flush is None:
            self._flush = asyncio.create_task(self._flush_next_turn())
        await done

    async def return_to_queue(self, message: AbstractIncomingMessage) -> None:
        """Give a delivery back unprocessed (nack with requeue), if the channel still can."""
        try:
            await message.nack(requeue=True)
        except Exception:
            log.warning(
                "nack failed; the broker requeues on channel close", extra=log_context(message)
            )
        # only now: until its nack is written, no multiple ack may reach past it
        self._forget(message)

    def _acks_of(self, message: AbstractIncomingMessage) -> _ChannelAcks:
        channel = _open_channel(message)
        acks = self._channels.get(id(channel))
        if acks is None or acks.channel is not channel:
            # a reconnect opened a new channel: what the closed ones held the broker took back
            self._channels = {
                key: state
                for key, state in self._channels.items()
                if not state.channel.is_closed or state.ready
            }
            acks = self._channels[id(channel)] = _ChannelAcks(channel)
        return acks

    def _forget(self, message: AbstractIncomingMessage) -> None:
        if message.delivery_tag is not None and _open_channel(message) is not None:
            self._acks_of(message).unsettled.discard(message.delivery_tag)

    async def _flush_next_turn(self) -> None:
        await asyncio.sleep(0)  # let every handler woken with this one ask too
        self._flush = None
        async with self._sending:
            for acks in list(self._channels.values()):
                ready, acks.ready = acks.ready, []
                if ready:
                    await _send(acks, ready)


async def _send(
    acks: _ChannelAcks, ready: list[tuple[AbstractIncomingMessage, asyncio.Future[None]]]
) -> None:
    ready.sort(key=lambda item: item[0].delivery_tag or 0)
    tags = {message.delivery_tag or 0 for message, _ in ready}
    others = acks.unsettled - tags
    first_unsettled = min(others) if others else None
    limit = (
        acks.seen_up_to if first_unsettled is None else min(first_unsettled - 1, acks.seen_up_to)
    )
    covered = [item for item in ready if (item[0].delivery_tag or 0) <= limit]
    acks.unsettled -= tags
    try:
        if covered:
            await _ack_one(covered[-1][0], multiple=len(covered) > 1)
        for message, _ in ready[len(covered) :]:
            await _ack_one(message)
    finally:
        for _, done in ready:
            if not done.done():
                done.set_result(None)


def _open_channel(message: AbstractIncomingMessage) -> Any:
    """The delivery's channel, or None once it is closed (aio-pika raises then)."""
    try:
        return message.channel
    except Exception:
        return None


async def _ack_one(message: AbstractIncomingMessage, *, multiple: bool = False) -> None:
    try:
        await (message.ack(multiple=True) if multiple else message.ack())
    except Exception:
        # The channel is gone: the broker redelivers and the inbox absorbs it.
        log.warning("ack failed; the message will be redelivered", extra=log_context(message))
