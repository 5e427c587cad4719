"""Export the message contract: one JSON Schema per message type and an AsyncAPI document.

The pydantic models in :mod:`shared.schemas` are the contract; the topology in
:mod:`shared.messaging.topology` says where messages travel. This module turns
both into documents for everyone who does not read Python:

``shared/schemas/json/<type>.schema.json``
    JSON Schema (draft 2020-12) of the body of one message type, exactly what
    :func:`shared.schemas.parse_message` accepts as far as JSON Schema can say
    it. Producers and consumers in other languages validate against it.

``shared/schemas/asyncapi.json``
    AsyncAPI 3.0.0: the exchanges and work queues as channels (with AMQP
    bindings), every message type with its payload schema, and which service
    sends or receives what.

Both are generated, never edited by hand. After changing a model or the
topology, run ``make schemas`` (``python -m shared.schemas.export``) and commit
the result; ``python -m shared.schemas.export --check`` writes nothing and
fails while the checked-in files differ from what the code generates, and the
unit tests call :func:`stale_files` to the same end.

The one piece of knowledge added here is :data:`PUBLICATIONS` (who publishes
which message types to which exchange), because the code says it nowhere else
in one place. It is cross-checked against the broker users' write permissions,
and every message type must have exactly one publisher.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

from shared.messaging.topology import (
    BROKER_USERS,
    COMMAND_ROUTES,
    COMMANDS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    EXCHANGES,
    FOLLOWUPS_EXCHANGE,
    VHOST,
    WORK_QUEUES,
    Exchange,
    WorkQueue,
)
from shared.schemas.envelope import Envelope
from shared.schemas.messages import (
    MESSAGE_TYPES,
    CommandMessage,
    EmailFailed,
    EmailSent,
    PushFailed,
    PushSent,
    PushSubscriptionExpired,
    RsvpMessage,
)

JSONObject = dict[str, Any]
MessageClass = type[Envelope[Any]]

SCHEMAS_DIR: Final = Path(__file__).resolve().parent
JSON_SCHEMA_DIR: Final = SCHEMAS_DIR / "json"
ASYNCAPI_PATH: Final = SCHEMAS_DIR / "asyncapi.json"
REPO_ROOT: Final = SCHEMAS_DIR.parents[1]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: Base of the schemas' ``$id``: an identifier, not a download location
#: (``.example`` is reserved, RFC 2606). The files live in this repository.
SCHEMA_ID_BASE: Final = "https://rsvp-pipeline.example/schemas/"

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


@dataclass(frozen=True)
class Publication:
    """``service`` publishes ``messages`` to ``exchange``."""

    service: str  # a broker user / queue owner of the topology
    exchange: str
    messages: tuple[MessageClass, ...]


PUBLICATIONS: Final[tuple[Publication, ...]] = (
    Publication("calendar", EVENTS_EXCHANGE, get_args(RsvpMessage)),
    Publication("calendar", COMMANDS_EXCHANGE, get_args(CommandMessage)),
    Publication("email", FOLLOWUPS_EXCHANGE, (EmailSent, EmailFailed)),
    Publication("push", FOLLOWUPS_EXCHANGE, (PushSent, PushFailed, PushSubscriptionExpired)),
)


# -- JSON Schema -----------------------------------------------------------------


def message_type(cls: MessageClass) -> str:
    """The wire ``type`` of a message class, e.g. ``"rsvp.created"``."""
    value = cls.model_fields["type"].default
    if not isinstance(value, str):
        raise TypeError(f"{cls.__name__} has no default for `type`")
    return value


def message_schema(cls: MessageClass) -> JSONObject:
    """The JSON Schema of one message body, with ``$defs`` for nested models.

    Starts from pydantic's validation-mode schema and adds two facts of the
    wire format that pydantic cannot see from the class alone:

    * ``type`` is required: :func:`~shared.schemas.parse_message` picks the
      class by it, so a body without it is refused even though the class
      has a default.
    * ``schema_version`` has a maximum, ``LATEST_VERSION``: the envelope
      refuses newer versions in a validator.
    """
    schema = cls.model_json_schema(mode="validation")
    properties: JSONObject = schema["properties"]
    required = {"type", *schema.get("required", [])}
    schema["required"] = [name for name in properties if name in required]
    version = {**properties["schema_version"], "maximum": cls.LATEST_VERSION}
    properties["schema_version"] = dict(sorted(version.items()))
    return schema


def schema_id(type_: str) -> str:
    return f"{SCHEMA_ID_BASE}{type_}.schema.json"


def json_schema_document(cls: MessageClass) -> JSONObject:
    """The standalone JSON Schema file of one message type."""
    type_ = message_type(cls)
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(type_), **message_schema(cls)}


# -- AsyncAPI --------------------------------------------------------------------


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


def routing_key(type_: str) -> str:
    """The routing key a message is published with.

    A command goes to its consumer's queue (``COMMAND_ROUTES``); everything
    else is published with its type, which topic bindings match on and fanout
    exchanges ignore.
    """
    return COMMAND_ROUTES.get(type_, type_)


def _routes(exchange: Exchange, binding_key: str, key: str) -> bool:
    if exchange.type == "fanout":
        return True
    if exchange.type == "direct":
        return binding_key == key
    return topic_matches(binding_key, key)


def _exchange(name: str) -> Exchange:
    for exchange in EXCHANGES:
        if exchange.name == name:
            return exchange
    raise KeyError(f"no exchange named {name!r} in the topology")


def _package(service: str) -> str:
    try:
        return SERVICE_PACKAGES[service]
    except KeyError:
        raise KeyError(f"topology names service {service!r}: add it to SERVICE_PACKAGES") from None


def _ordered(types: Iterable[str]) -> list[str]:
    """Message types in the order of MESSAGE_TYPES, each once."""
    wanted = set(types)
    return [t for t in MESSAGE_TYPES if t in wanted]


def _check_publications() -> None:
    """Refuse to document what the broker would refuse, or to leave a type out."""
    publishers: dict[str, list[str]] = {t: [] for t in MESSAGE_TYPES}
    users = {user.name: user for user in BROKER_USERS}
    for publication in PUBLICATIONS:
        _exchange(publication.exchange)
        user = users[publication.service]
        if not re.fullmatch(user.write, publication.exchange):
            raise ValueError(
                f"broker user {user.name!r} may not write to {publication.exchange!r}, "
                "yet PUBLICATIONS says it publishes there"
            )
        for cls in publication.messages:
            publishers[message_type(cls)].append(publication.service)
    for type_, services in publishers.items():
        if len(services) != 1:
            raise ValueError(f"{type_} must have exactly one publisher in PUBLICATIONS: {services}")


def _exchange_messages(exchange: str) -> list[str]:
    return _ordered(
        message_type(cls)
        for publication in PUBLICATIONS
        if publication.exchange == exchange
        for cls in publication.messages
    )


def _queue_messages(queue: WorkQueue) -> list[str]:
    """The message types that the queue's bindings let in."""
    return _ordered(
        type_
        for binding in queue.bindings
        for type_ in _exchange_messages(binding.exchange)
        if _routes(_exchange(binding.exchange), binding.routing_key, routing_key(type_))
    )


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
        messages = _ordered(t for q in WORK_QUEUES for t in _queue_messages(q))
    else:
        messages = _exchange_messages(exchange.name)
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
        "messages": _message_refs(_queue_messages(queue)),
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
    for publication in PUBLICATIONS:
        exchange = _exchange(publication.exchange)
        package = _package(publication.service)
        channel_id = _channel_id("exchange", exchange.name)
        for cls in publication.messages:
            type_ = message_type(cls)
            amqp: JSONObject = {
                "deliveryMode": PERSISTENT,
                "timestamp": True,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
            if exchange.type != "fanout":  # a fanout exchange ignores the routing key
                amqp = {"cc": [routing_key(type_)], **amqp}
            yield (
                f"{package}.send.{type_}",
                {
                    "action": "send",
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "title": f"{package} publishes {type_}",
                    "summary": _summary(cls),
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
                "messages": _operation_messages(channel_id, _queue_messages(queue)),
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
    _check_publications()
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


# -- files -----------------------------------------------------------------------


def _dump(document: JSONObject) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_schema_path(type_: str) -> Path:
    return JSON_SCHEMA_DIR / f"{type_}.schema.json"


def render_all() -> dict[Path, str]:
    """Every generated file (absolute path) with the text it should have."""
    files = {
        json_schema_path(type_): _dump(json_schema_document(cls))
        for type_, cls in MESSAGE_TYPES.items()
    }
    files[ASYNCAPI_PATH] = _dump(asyncapi_document())
    return files


def _orphans(expected: Iterable[Path]) -> list[Path]:
    """Schema files of message types that no longer exist."""
    keep = set(expected)
    return sorted(p for p in JSON_SCHEMA_DIR.glob("*.schema.json") if p not in keep)


def staleness() -> dict[Path, str]:
    """Each out-of-date file with why: ``missing``, ``differs`` or ``obsolete``."""
    expected = render_all()
    stale: dict[Path, str] = {}
    for path, text in expected.items():
        if not path.exists():
            stale[path] = "missing"
        elif path.read_text(encoding="utf-8") != text:
            stale[path] = "differs"
    for path in _orphans(expected):
        stale[path] = "obsolete"
    return dict(sorted(stale.items()))


def stale_files() -> list[Path]:
    """The checked-in files that differ from what the code generates (empty when fresh)."""
    return list(staleness())


def write_all() -> list[Path]:
    """Bring the checked-in files up to date; returns the files written or removed."""
    expected = render_all()
    JSON_SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for path, text in expected.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in _orphans(expected):
        path.unlink()
        changed.append(path)
    return changed


def _display(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.schemas.export",
        description="Write the JSON Schemas and the AsyncAPI document of the message contract.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the checked-in files are stale",
    )
    args = parser.parse_args(argv)

    if args.check:
        stale = staleness()
        if stale:
            lines = "\n".join(f"  {_display(path)} ({why})" for path, why in stale.items())
            print(
                f"message contract files are stale:\n{lines}\n"
                "run `make schemas` and commit the result",
                file=sys.stderr,
            )
            return 1
        return 0

    changed = write_all()
    for path in changed:
        print(f"{'removed' if not path.exists() else 'wrote'} {_display(path)}")
    if not changed:
        print("message contract files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
