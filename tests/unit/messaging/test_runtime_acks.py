"""Acks asked for together go out as one ``basic.ack(multiple=True)`` where that is safe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shared.messaging.acks import Acknowledger


@dataclass
class FakeChannel:
    is_closed: bool = False
    frames: list[str] = field(default_factory=list)


@dataclass
class FakeDelivery:
    delivery_tag: int
    channel: FakeChannel

    async def ack(self, multiple: bool = False) -> None:
        self.channel.frames.append(f"ack {self.delivery_tag}{' multiple' if multiple else ''}")

    async def nack(self, requeue: bool = True) -> None:
        self.channel.frames.append(f"nack {self.delivery_tag}")


def delivered(acks: Acknowledger, channel: FakeChannel, count: int) -> list[FakeDelivery]:
    deliveries = [FakeDelivery(tag, channel) for tag in range(1, count + 1)]
    for delivery in deliveries:
        acks.delivered(delivery)  # type: ignore[arg-type]
    return deliveries


async def test_acks_of_one_turn_with_nothing_unsettled_before_them_are_one_frame() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    deliveries = delivered(acks, channel, 3)

    await asyncio.gather(*(acks.ack(d) for d in reversed(deliveries)))  # type: ignore[arg-type]

    assert channel.frames == ["ack 3 multiple"]


async def test_a_delivery_still_in_flight_is_never_covered_by_a_multiple_ack() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    first, _slow, third, fourth = delivered(acks, channel, 4)

    await asyncio.gather(acks.ack(first), acks.ack(third), acks.ack(fourth))  # type: ignore[arg-type]

    assert channel.frames == ["ack 1", "ack 3", "ack 4"]


async def test_a_returned_delivery_no_longer_holds_back_the_ones_after_it() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    first, second, third = delivered(acks, channel, 3)

    await acks.return_to_queue(first)  # type: ignore[arg-type]
    await asyncio.gather(acks.ack(second), acks.ack(third))  # type: ignore[arg-type]

    assert channel.frames == ["nack 1", "ack 3 multiple"]


async def test_a_tag_never_seen_as_delivered_is_never_covered() -> None:
    acks, channel = Acknowledger(), FakeChannel()
    unseen, second, third = (FakeDelivery(tag, channel) for tag in (1, 2, 3))
    acks.delivered(second)  # type: ignore[arg-type]
    acks.delivered(third)  # type: ignore[arg-type]

    await asyncio.gather(acks.ack(second), acks.ack(third))  # type: ignore[arg-type]

    assert channel.frames == ["ack 2", "ack 3"]
    assert unseen.channel.frames == channel.frames  # nothing acked tag 1
