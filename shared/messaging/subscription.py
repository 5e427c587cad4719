"""What a consumer asks the runtime for: a work queue, the message types it takes, a handler.

The runtime parses each body into its message class and calls the handler
only with a type the subscription accepts, so a handler is a plain async
function of its own message type and never re-checks it; any other type is
dead-lettered as permanent with reason :data:`UNEXPECTED_TYPE`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Generic, TypeVar, get_args

from shared.messaging.errors import MessagingError, PermanentError
from shared.messaging.topology import WorkQueue
from shared.schemas import Envelope

#: The message type(s) one subscription's handler takes.
M = TypeVar("M", bound=Envelope[Any])

#: Handles one typed message and returns the follow-ups to publish (maybe none).
#: It reports failure by raising TransientError or PermanentError.
Handler = Callable[[M], Awaitable[Sequence[Envelope[Any]]]]

#: Builds the follow-ups (``email.failed`` …) for an accepted message the
#: runtime dead-letters. The error's ``reason`` is the dead letter's ``x-fault-reason``.
DeadLetterFollowups = Callable[[M, MessagingError], Sequence[Envelope[Any]]]

#: The fault reason of a valid message that the subscription does not take.
UNEXPECTED_TYPE = "unexpected_type"


def message_classes(accepts: object) -> tuple[type[Envelope[Any]], ...]:
    """The message classes of ``accepts``: one class, or each member of a union of them."""
    members = get_args(accepts) if isinstance(accepts, UnionType) else (accepts,)
    classes: list[type[Envelope[Any]]] = []
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Envelope)):
            raise TypeError(f"a subscription accepts message classes, not {member!r}")
        classes.append(member)
    return tuple(classes)


@dataclass(frozen=True)
class Subscription(Generic[M]):
    """A work queue, the message classes it takes, their handler and failure follow-ups.

    ``consumer`` keys the inbox and the follow-up ids: ``<runtime>/<queue>``,
    so one process consuming two queues that receive the same broadcast
    message (``email.rsvp_events`` and ``push.rsvp_events``) handles it once
    per queue, not once in all.
    """

    queue: WorkQueue
    accepts: tuple[type[Envelope[Any]], ...]
    handler: Handler[M]
    on_dead_letter: DeadLetterFollowups[M] | None
    consumer: str

    def takes(self, message: Envelope[Any]) -> bool:
        return isinstance(message, self.accepts)

    def unexpected(self, message: Envelope[Any]) -> PermanentError:
        """The error a message of a type this subscription does not take is dead-lettered with."""
        return PermanentError(
            f"{self.queue.name} does not take {message.type}", reason=UNEXPECTED_TYPE
        )
