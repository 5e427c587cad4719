"""What a consumer asks the runtime for: a work queue and the plain async function for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.messaging.errors import MessagingError
from shared.messaging.topology import WorkQueue
from shared.schemas import Envelope

#: Handles one typed message and returns the follow-ups to publish (maybe none).
#: It reports failure by raising TransientError or PermanentError.
Handler = Callable[[Envelope[Any]], Awaitable[Sequence[Envelope[Any]]]]

#: Builds the follow-ups (``email.failed`` …) for a message the runtime dead-letters.
#: The error's ``reason`` is the dead letter's ``x-fault-reason``.
DeadLetterFollowups = Callable[[Envelope[Any], MessagingError], Sequence[Envelope[Any]]]


@dataclass(frozen=True)
class Subscription:
    """A work queue, the handler of its messages and its failure follow-ups.

    ``consumer`` keys the inbox and the follow-up ids: ``<runtime>/<queue>``,
    so one process consuming two queues that receive the same broadcast
    message (``email.rsvp_events`` and ``push.rsvp_events``) handles it once
    per queue, not once in all.
    """

    queue: WorkQueue
    handler: Handler
    on_dead_letter: DeadLetterFollowups | None
    consumer: str
