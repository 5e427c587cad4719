"""The broker topology of design §4, declared once and typed.

``broker/definitions.json`` is generated from this module
(``python -m shared.messaging.definitions``); code that publishes or
consumes takes exchange, queue and routing-key names from here, never as
string literals of its own. :data:`ROUTES` is the one table of where each
message type is published and by whom: the outbox, the consumers' follow-up
publishing and the AsyncAPI export all read it.

Each work queue is a quorum queue with a delivery limit (poison messages are
stopped by the broker) and at-least-once dead-lettering into ``dlx`` with the
queue's own name as routing key, so ``<queue>.dlq`` receives exactly its
queue's dead letters. Retry tiers are quorum queues with a message TTL whose
dead-letter target is the default exchange and the origin queue's name: a
message parked there comes back to where it failed once its delay is over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from shared.schemas.envelope import Envelope
from shared.schemas.messages import (
    EmailFailed,
    EmailSend,
    EmailSent,
    PushFailed,
    PushSend,
    PushSent,
    PushSubscriptionExpired,
    RsvpMessage,
    message_type,
)

VHOST = "rsvp"

EVENTS_EXCHANGE = "rsvp.events"  # fanout: every RSVP event to every subscriber
COMMANDS_EXCHANGE = "notify.direct"  # direct: a command to exactly one queue
FOLLOWUPS_EXCHANGE = "notify.followups"  # topic: outcomes, routed by message type
DEAD_LETTER_EXCHANGE = "dlx"  # direct: routing key = origin queue name

#: Growing delays between attempts; attempt n waits RETRY_DELAYS_S[n-1].
RETRY_DELAYS_S: tuple[int, ...] = (1, 5, 30, 120)
#: Redeliveries the broker allows before it dead-letters a message itself.
DELIVERY_LIMIT = 5
#: Backpressure: past this depth publishers are refused rather than the broker drowning.
MAX_QUEUE_LENGTH = 1_000_000

ExchangeType = Literal["fanout", "direct", "topic"]


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class WorkQueue:
    """A queue that a consumer reads, with its retry tiers and dead-letter queue."""

    name: str
    owner: str  # the service (and broker user) that consumes it
    bindings: tuple[Binding, ...]
    retry_exchange: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_exchange", f"{self.owner}.retry")

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"

    def retry_queue(self, delay_s: int) -> str:
        """The name (and routing key) of this queue's delay queue of ``delay_s`` seconds."""
        if delay_s not in RETRY_DELAYS_S:
            raise ValueError(f"{self.name} has no {delay_s}s retry queue")
        return f"{self.name}.retry.{delay_s}s"

    @property
    def retry_queues(self) -> tuple[tuple[str, int], ...]:
        """(name, delay in seconds) of every retry tier, shortest first."""
        return tuple((self.retry_queue(delay_s), delay_s) for delay_s in RETRY_DELAYS_S)

    def arguments(self) -> dict[str, object]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-max-length": MAX_QUEUE_LENGTH,
        }


EXCHANGES: tuple[Exchange, ...] = (
    Exchange(EVENTS_EXCHANGE, "fanout"),
    Exchange(COMMANDS_EXCHANGE, "direct"),
    Exchange(FOLLOWUPS_EXCHANGE, "topic"),
    Exchange(DEAD_LETTER_EXCHANGE, "direct"),
)

EMAIL_RSVP_EVENTS = WorkQueue(
    "email.rsvp_events", owner="email", bindings=(Binding(EVENTS_EXCHANGE, ""),)
)
PUSH_RSVP_EVENTS = WorkQueue(
    "push.rsvp_events", owner="push", bindings=(Binding(EVENTS_EXCHANGE, ""),)
)
EMAIL_COMMANDS = WorkQueue(
    "email.commands", owner="email", bindings=(Binding(COMMANDS_EXCHANGE, "email.commands"),)
)
PUSH_COMMANDS = WorkQueue(
    "push.commands", owner="push", bindings=(Binding(COMMANDS_EXCHANGE, "push.commands"),)
)
CALENDAR_FOLLOWUPS = WorkQueue(
    "calendar.followups",
    owner="calendar",
    bindings=(Binding(FOLLOWUPS_EXCHANGE, "email.*"), Binding(FOLLOWUPS_EXCHANGE, "push.*")),
)

WORK_QUEUES: tuple[WorkQueue, ...] = (
    EMAIL_RSVP_EVENTS,
    PUSH_RSVP_EVENTS,
    EMAIL_COMMANDS,
    PUSH_COMMANDS,
    CALENDAR_FOLLOWUPS,
)


@dataclass(frozen=True)
class MessageRoute:
    """Where messages of one type are published, and which service publishes them."""

    exchange: str
    routing_key: str
    publisher: str  # a broker user / queue owner: the only service that sends this type


def _routes(
    messages: tuple[type[Envelope[Any]], ...],
    *,
    exchange: str,
    publisher: str,
    routing_key: str | None = None,
) -> dict[str, MessageRoute]:
    """Routes of ``messages``; without ``routing_key`` each goes with its own type as key."""
    return {
        message_type(cls): MessageRoute(
            exchange, message_type(cls) if routing_key is None else routing_key, publisher
        )
        for cls in messages
    }


#: Message type -> its route. RSVP events fan out (the key is ignored); a
#: command goes to exactly its consumer's queue; a follow-up is routed by its
#: type, which the calendar's topic bindings match on.
ROUTES: dict[str, MessageRoute] = {
    **_routes(
        get_args(RsvpMessage), exchange=EVENTS_EXCHANGE, routing_key="", publisher="calendar"
    ),
    **_routes(
        (EmailSend,),
        exchange=COMMANDS_EXCHANGE,
        routing_key=EMAIL_COMMANDS.name,
        publisher="calendar",
    ),
    **_routes(
        (PushSend,),
        exchange=COMMANDS_EXCHANGE,
        routing_key=PUSH_COMMANDS.name,
        publisher="calendar",
    ),
    **_routes((EmailSent, EmailFailed), exchange=FOLLOWUPS_EXCHANGE, publisher="email"),
    **_routes(
        (PushSent, PushFailed, PushSubscriptionExpired),
        exchange=FOLLOWUPS_EXCHANGE,
        publisher="push",
    ),
}


def route_of(message_type: str) -> MessageRoute:
    """The route of ``message_type``; KeyError for a type the topology does not carry."""
    try:
        return ROUTES[message_type]
    except KeyError:
        raise KeyError(f"no route for message type {message_type!r}") from None


def dead_letter_queues() -> dict[str, str]:
    """DLQ name -> origin work queue name."""
    return {q.dead_letter_queue: q.name for q in WORK_QUEUES}


@dataclass(frozen=True)
class BrokerUser:
    """A broker account with least privilege, one per service (design §4).

    Patterns are RabbitMQ permission regexes over resource names. No service
    may declare or delete anything (``configure``): the topology is the
    operator's, loaded from definitions.
    """

    name: str
    tags: tuple[str, ...]
    configure: str
    write: str
    read: str


def _alternatives(*names: str) -> str:
    return "^(" + "|".join(n.replace(".", r"\.") for n in names) + ")$"


def _queues_of(owner: str) -> tuple[str, ...]:
    return tuple(q.name for q in WORK_QUEUES if q.owner == owner)


def _consumer_user(owner: str) -> BrokerUser:
    """email/push: read their own queues; write retries, follow-ups, dead letters."""
    return BrokerUser(
        name=owner,
        tags=(),
        configure="^$",
        write=_alternatives(f"{owner}.retry", FOLLOWUPS_EXCHANGE, DEAD_LETTER_EXCHANGE),
        read=_alternatives(*_queues_of(owner)),
    )


BROKER_USERS: tuple[BrokerUser, ...] = (
    BrokerUser(
        name="calendar",
        tags=(),
        configure="^$",
        # publishes RSVP events and commands; consumes follow-ups
        write=_alternatives(
            EVENTS_EXCHANGE, COMMANDS_EXCHANGE, "calendar.retry", DEAD_LETTER_EXCHANGE
        ),
        read=_alternatives(*_queues_of("calendar")),
    ),
    _consumer_user("email"),
    _consumer_user("push"),
    BrokerUser(
        # operators: watch everything in the UI, read dead letters, replay them
        # (rsvp-dlq publishes to origin queues and DLQs through the default
        # exchange), publish by hand from the UI, and move messages with shovels
        name="ops",
        tags=("monitoring", "policymaker"),
        configure="^$",
        write=".*",
        read=r"^.*\.dlq$",
    ),
    BrokerUser(
        # the admin API's replays (internet-facing, so not ops): publish a stored dead
        # letter to its origin queue (default exchange) or its original exchange; reads
        # nothing, and no management tag (the API never calls the management API)
        name="dlq-admin",
        tags=(),
        configure="^$",
        write=_alternatives("amq.default", EVENTS_EXCHANGE, COMMANDS_EXCHANGE, FOLLOWUPS_EXCHANGE),
        read="^$",
    ),
)


@dataclass(frozen=True)
class TopicPermission:
    """Which routing keys a user may publish to a topic exchange (RabbitMQ topic authorisation).

    ``write`` also needs the user's ordinary write permission on the exchange;
    ``read`` governs binding to it, which no service does.
    """

    user: str
    exchange: str
    write: str
    read: str = "^$"


def _followups_of(publisher: str) -> TopicPermission:
    """A consumer may report only its own outcomes: email cannot publish ``push.*``."""
    keys = sorted(
        route.routing_key
        for route in ROUTES.values()
        if route.exchange == FOLLOWUPS_EXCHANGE and route.publisher == publisher
    )
    return TopicPermission(publisher, FOLLOWUPS_EXCHANGE, write=_alternatives(*keys))


TOPIC_PERMISSIONS: tuple[TopicPermission, ...] = (_followups_of("email"), _followups_of("push"))
