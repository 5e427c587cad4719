"""What the topology's route table implies: which message types reach which queue.

:data:`~shared.messaging.topology.ROUTES` says where each type is published;
the queues' bindings say what each queue takes from an exchange. Matching one
against the other, as the broker does, tells which types every queue (and so
every consumer) receives: the AsyncAPI export documents it, and
:func:`check_routes` refuses a table the broker users' permissions contradict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.messaging.topology import BROKER_USERS, EXCHANGES, ROUTES, Exchange, WorkQueue
from shared.schemas.messages import MESSAGE_TYPES


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on ``.``; ``*`` is one word, ``#`` zero or more."""

    def match(pattern_words: Sequence[str], key_words: Sequence[str]) -> bool:
        if not pattern_words:
            return not key_words
        head, rest = pattern_words[0], pattern_words[1:]
        if head == "#":
            return any(match(rest, key_words[i:]) for i in range(len(key_words) + 1))
        if not key_words:
            return False
        return head in ("*", key_words[0]) and match(rest, key_words[1:])

    return match(pattern.split("."), routing_key.split("."))


def binding_matches(exchange: Exchange, binding_key: str, routing_key: str) -> bool:
    """Whether a queue bound to ``exchange`` with ``binding_key`` gets ``routing_key``."""
    if exchange.type == "fanout":
        return True
    if exchange.type == "direct":
        return binding_key == routing_key
    return topic_matches(binding_key, routing_key)


def exchange_named(name: str) -> Exchange:
    for exchange in EXCHANGES:
        if exchange.name == name:
            return exchange
    raise KeyError(f"no exchange named {name!r} in the topology")


def in_type_order(types: Iterable[str]) -> list[str]:
    """Message types in the order of MESSAGE_TYPES, each once."""
    wanted = set(types)
    return [t for t in MESSAGE_TYPES if t in wanted]


def check_routes() -> None:
    """Refuse a route the broker would refuse, or a message type without a route."""
    users = {user.name: user for user in BROKER_USERS}
    for type_, route in ROUTES.items():
        if type_ not in MESSAGE_TYPES:
            raise ValueError(f"ROUTES routes {type_!r}, which is no message type")
        exchange_named(route.exchange)
        user = users[route.publisher]
        if not re.fullmatch(user.write, route.exchange):
            raise ValueError(
                f"broker user {user.name!r} may not write to {route.exchange!r}, "
                f"yet ROUTES says it publishes {type_} there"
            )
    unrouted = [type_ for type_ in MESSAGE_TYPES if type_ not in ROUTES]
    if unrouted:
        raise ValueError(f"add a route to topology.ROUTES for {unrouted}")


def types_published_to(exchange: str) -> list[str]:
    """The message types whose route goes through ``exchange``."""
    return in_type_order(type_ for type_, route in ROUTES.items() if route.exchange == exchange)


def types_received_by(queue: WorkQueue) -> list[str]:
    """The message types that the queue's bindings let in."""
    return in_type_order(
        type_
        for binding in queue.bindings
        for type_ in types_published_to(binding.exchange)
        if binding_matches(
            exchange_named(binding.exchange), binding.routing_key, ROUTES[type_].routing_key
        )
    )
