"""The AsyncAPI 3.0.0 document of the pipeline, generated from the code.

Channels are the topology's exchanges and work queues (with their AMQP
bindings), messages are the pydantic models, and who sends what where comes
from the topology's route table (:data:`shared.messaging.topology.ROUTES`);
who receives what follows from each queue's bindings. Nothing is written by
hand: :mod:`shared.schemas.export` writes the document to
``shared/schemas/asyncapi.json``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any, Final

from shared.messaging.routing import (
    check_routes,
    exchange_named,
    in_type_order,
    types_published_to,
    types_received_by,
)
from shared.messaging.topology import (
    COMMANDS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    EXCHANGES,
    FOLLOWUPS_EXCHANGE,
    ROUTES,
    VHOST,
    WORK_QUEUES,
    Exchange,
    WorkQueue,
)
from shared.schemas.jsonschema import JSONObject, MessageClass, message_schema
from shared.schemas.messages import MESSAGE_TYPES, message_type

ASYNCAPI_VERSION: Final = "3.0.0"
AMQP_BINDING_VERSION: Final = "0.3.0"
#: Version of the AsyncAPI document as a whole (``info.version``). Message
#: payloads are versioned one by one, by their ``schema_version``.
CONTRACT_VERSION: Final = "1.0.0"
CONTENT_TYPE: Final = "application/json"
PERSISTENT: Final = 2  # AMQP delivery mode

#: Broker user / queue owner (``topology``) -> the package that runs as it.
SERVICE_PACKAGES: Final[dict[str, str]] = {
    "calendar": "calendar_service",
    "email": "email_consumer",
    "push": "push_consumer",
}

#: What each exchange is for, in a sentence; the rest of a channel's
#: description is generated from the topology.
EXCHANGE_PURPOSES: Final[dict[str, str]] = {
    EVENTS_EXCHANGE: "RSVP events, broadcast to every service that reacts to them.",
    COMMANDS_EXCHANGE: "Point-to-point commands: each one reaches exactly one consumer's queue.",
    FOLLOWUPS_EXCHANGE: (
        "Outcomes of notifications, routed by message type; the calendar service "
        "records them as delivery status."
    ),
    DEAD_LETTER_EXCHANGE: (
        "Dead letters: messages a work queue gave up on, routed by the name of that "
        "queue to `<queue>.dlq`. They keep their body and message_id and carry the "
        "reason in `x-fault-reason`, `x-exception-type`, ... headers (or `x-death` when "
        "the broker dead-lettered them). Replay tools move them back."
    ),
}

EXCHANGE_ROUTING: Final[dict[str, str]] = {
    "fanout": "every bound queue gets a copy of every message; the routing key is ignored",
    "direct": "a message goes to the queues bound with exactly its routing key",
    "topic": (
        "a message goes to the queues whose binding pattern matches its routing key "
        "(`*` one word, `#` any number of words)"
    ),
}


def _package(service: str) -> str:
    try:
        return SERVICE_PACKAGES[service]
    except KeyError:
        raise KeyError(f"topology names service {service!r}: add it to SERVICE_PACKAGES") from None


def _channel_id(kind: str, name: str) -> str:
    return f"{kind}.{name}"


def _message_refs(types: Iterable[str]) -> JSONObject:
    return {t: {"$ref": f"#/components/messages/{t}"} for t in types}


def _code(text: str) -> str:
    return f"`{text}`" if text else "`''`"


def _bound_queues(exchange: Exchange) -> list[tuple[str, str]]:
    """(queue, binding key) pairs of the exchange."""
    if exchange.name == DEAD_LETTER_EXCHANGE:
        return [(q.dead_letter_queue, q.name) for q in WORK_QUEUES]
    return [
        (q.name, b.routing_key)
        for q in WORK_QUEUES
        for b in q.bindings
        if b.exchange == exchange.name
    ]


def _exchange_channel(exchange: Exchange) -> JSONObject:
    bound = _bound_queues(exchange)
    if exchange.name == DEAD_LETTER_EXCHANGE:
        messages = in_type_order(t for q in WORK_QUEUES for t in types_received_by(q))
    else:
        messages = types_published_to(exchange.name)
    queues = ", ".join(
        _code(queue) if exchange.type == "fanout" else f"{_code(queue)} (key {_code(key)})"
        for queue, key in bound
    )
    try:
        purpose = EXCHANGE_PURPOSES[exchange.name]
    except KeyError:
        raise KeyError(f"add exchange {exchange.name!r} to EXCHANGE_PURPOSES") from None
    return {
        "address": exchange.name,
        "title": f"{exchange.name} ({exchange.type} exchange)",
        "description": (
            f"{purpose}\n\n{exchange.type.capitalize()} exchange: "
            f"{EXCHANGE_ROUTING[exchange.type]}. Bound queues: {queues or 'none'}."
        ),
        "messages": _message_refs(messages),
        "bindings": {
            "amqp": {
                "is": "routingKey",
                # durable and kept as broker/definitions.json declares every exchange
                "exchange": {
                    "name": exchange.name,
                    "type": exchange.type,
                    "durable": True,
                    "autoDelete": False,
                    "vhost": VHOST,
                },
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _queue_channel(queue: WorkQueue) -> JSONObject:
    sources = ", ".join(
        f"{_code(b.exchange)} with key {_code(b.routing_key)}" for b in queue.bindings
    )
    retries = ", ".join(_code(name) for name, _ in queue.retry_queues)
    return {
        "address": queue.name,
        "title": f"{queue.name} (work queue of {_package(queue.owner)})",
        "description": (
            f"Quorum queue consumed by `{_package(queue.owner)}`, bound to {sources}. "
            f"After a transient failure a message waits in the retry queues in turn "
            f"({retries}) and comes back; after a permanent failure, or once it was "
            f"returned unacknowledged more than {DELIVERY_LIMIT} times, it is "
            f"dead-lettered to {_code(queue.dead_letter_queue)}."
        ),
        "messages": _message_refs(types_received_by(queue)),
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue.name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": VHOST,
                },
                "x-exchange-bindings": [
                    {"exchange": b.exchange, "routingKey": b.routing_key} for b in queue.bindings
                ],
                "x-queue-arguments": queue.arguments(),
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _channels() -> dict[str, JSONObject]:
    channels = {_channel_id("exchange", ex.name): _exchange_channel(ex) for ex in EXCHANGES}
    channels.update({_channel_id("queue", q.name): _queue_channel(q) for q in WORK_QUEUES})
    return channels


def _operation_messages(channel_id: str, types: Iterable[str]) -> list[JSONObject]:
    # AsyncAPI 3: an operation's messages are references to its channel's messages
    return [{"$ref": f"#/channels/{channel_id}/messages/{t}"} for t in types]


def _send_operations() -> Iterator[tuple[str, JSONObject]]:
    """One operation per message type: who publishes it, where, with which key."""
    for type_, route in ROUTES.items():
        exchange = exchange_named(route.exchange)
        package = _package(route.publisher)
        channel_id = _channel_id("exchange", exchange.name)
        amqp: JSONObject = {
            "deliveryMode": PERSISTENT,
            "timestamp": True,
            "bindingVersion": AMQP_BINDING_VERSION,
        }
        if exchange.type != "fanout":  # a fanout exchange ignores the routing key
            amqp = {"cc": [route.routing_key], **amqp}
        yield (
            f"{package}.send.{type_}",
            {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "title": f"{package} publishes {type_}",
                "summary": _summary(MESSAGE_TYPES[type_]),
                "messages": _operation_messages(channel_id, [type_]),
                "bindings": {"amqp": amqp},
            },
        )


def _receive_operations() -> Iterator[tuple[str, JSONObject]]:
    """One operation per work queue: its owner consumes it."""
    for queue in WORK_QUEUES:
        package = _package(queue.owner)
        channel_id = _channel_id("queue", queue.name)
        yield (
            f"{package}.receive.{queue.name}",
            {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "title": f"{package} consumes {queue.name}",
                "summary": "Acked only once the work is done and any follow-up publish confirmed.",
                "messages": _operation_messages(channel_id, types_received_by(queue)),
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            },
        )


def _operations() -> dict[str, JSONObject]:
    operations: dict[str, JSONObject] = {}
    for operation_id, operation in (*_send_operations(), *_receive_operations()):
        if operation_id in operations:
            raise ValueError(f"two operations would be called {operation_id!r}")
        operations[operation_id] = operation
    return operations


def _summary(cls: MessageClass) -> str:
    return (inspect.getdoc(cls) or message_type(cls)).splitlines()[0]


def _rewrite_refs(node: Any, old_prefix: str, new_prefix: str) -> Any:
    """A copy of ``node`` with every ``$ref`` under ``old_prefix`` moved to ``new_prefix``."""
    if isinstance(node, dict):
        return {
            key: (
                new_prefix + value.removeprefix(old_prefix)
                if key == "$ref" and isinstance(value, str) and value.startswith(old_prefix)
                else _rewrite_refs(value, old_prefix, new_prefix)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, old_prefix, new_prefix) for item in node]
    return node


def _component_schemas() -> dict[str, JSONObject]:
    """Every message schema plus the models they nest, under one namespace.

    pydantic puts nested models in each schema's own ``$defs``; here they are
    lifted into ``components.schemas`` and the ``$ref``s rewritten to match.
    No ``$id`` is carried over: it would change the base that the
    ``#/components/...`` references resolve against.
    """
    schemas: dict[str, JSONObject] = {}

    def add(name: str, schema: JSONObject) -> None:
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"two different schemas are both called {name!r}: rename a model")
        schemas[name] = schema

    for cls in MESSAGE_TYPES.values():
        schema = _rewrite_refs(message_schema(cls), "#/$defs/", "#/components/schemas/")
        for name, definition in schema.pop("$defs", {}).items():
            add(name, definition)
        add(cls.__name__, schema)
    return dict(sorted(schemas.items()))


def _component_messages() -> dict[str, JSONObject]:
    return {
        type_: {
            "name": type_,
            "title": cls.__name__,
            "summary": _summary(cls),
            "contentType": CONTENT_TYPE,
            "correlationId": {"$ref": "#/components/correlationIds/correlation_id"},
            "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
            "bindings": {"amqp": {"messageType": type_, "bindingVersion": AMQP_BINDING_VERSION}},
        }
        for type_, cls in MESSAGE_TYPES.items()
    }


def asyncapi_document() -> JSONObject:
    """The AsyncAPI 3.0.0 document of the whole pipeline."""
    check_routes()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "RSVP pipeline messages",
            "version": CONTRACT_VERSION,
            "description": (
                "Messages between calendar_service, email_consumer and push_consumer "
                f"over RabbitMQ (vhost `{VHOST}`). Every body is a JSON envelope "
                "(message_id, type, schema_version, occurred_at, correlation_id, "
                "causation_id, producer, data); AMQP properties mirror it (message_id, "
                "type, correlation_id, timestamp, app_id = producer) and messages are "
                "persistent. Consumers ignore unknown fields and dead-letter what does "
                "not validate. Retry and dead-letter queues are described on each work "
                "queue.\n\nGenerated by `python -m shared.schemas.export` from "
                "`shared/schemas` and `shared/messaging/topology.py`: do not edit, "
                "run `make schemas`."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _component_schemas(),
            "messages": _component_messages(),
            "correlationIds": {
                "correlation_id": {
                    "description": (
                        "Shared by every message of one chain, from the RSVP or API "
                        "call that started it to the last follow-up."
                    ),
                    "location": "$message.payload#/correlation_id",
                }
            },
        },
    }
