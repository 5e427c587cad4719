"""The message contract (design §5): what a body must be, and how it is exported.

Each test states one rule of the contract. The samples below are realistic
messages of every type; a new message type needs a sample here before the
parametrized tests pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from shared.schemas import (
    MESSAGE_TYPES,
    AttendanceStatus,
    Attendee,
    DeliveryFailedPayload,
    EmailSend,
    EmailSent,
    EmailSentPayload,
    Envelope,
    EventSummary,
    InvalidMessage,
    NotificationCommand,
    NotificationKind,
    Payload,
    PushSentPayload,
    RsvpCreated,
    RsvpPayload,
    SubscriptionExpiredPayload,
    export,
    parse_message,
)

# -- samples ---------------------------------------------------------------------

EVENT_ID = UUID("3f2c8a1e-5b7d-4c59-9e21-7d4b8f6a0c13")
RSVP_ID = UUID("9a4e1c77-20b3-4f0e-8d6a-51c2e93b7f08")
USER_ID = UUID("c81d4e2a-6f3b-4a97-b0e5-2d7f9a1c3e64")
ANNOUNCEMENT_ID = UUID("5e0b7d93-1a2c-4e8f-9b36-0c4d8e2f7a15")
SOURCE_MESSAGE_ID = UUID("0d9f3b6c-8e21-4a75-a4c0-7b1e5f2d9c38")


def _event() -> EventSummary:
    return EventSummary(
        event_id=EVENT_ID,
        title="Async Python meetup",
        starts_at=datetime(2025, 11, 20, 18, 30, tzinfo=UTC),
        ends_at=datetime(2025, 11, 20, 21, 0, tzinfo=UTC),
        location="Workshop room, 2nd floor",
        organizer_name="Grace Hopper",
        organizer_email="grace@example.org",
    )


def _attendee() -> Attendee:
    return Attendee(user_id=USER_ID, email="ada@example.com", name="Ada Lovelace")


def rsvp(
    status: AttendanceStatus, previous: AttendanceStatus | None, version: int, guests: int = 0
) -> RsvpPayload:
    return RsvpPayload(
        rsvp_id=RSVP_ID,
        event=_event(),
        attendee=_attendee(),
        status=status,
        previous_status=previous,
        guests=guests,
        version=version,
    )


def confirmation_command() -> NotificationCommand:
    return NotificationCommand(
        kind="confirmation", recipient=_attendee(), event=_event(), rsvp_id=RSVP_ID, status="going"
    )


def reminder_command() -> NotificationCommand:
    return NotificationCommand(
        kind="reminder",
        recipient=_attendee(),
        event=_event(),
        rsvp_id=RSVP_ID,
        remind_before_seconds=3600,
    )


def _outcome(source_type: str, kind: NotificationKind) -> dict[str, Any]:
    return {
        "source_message_id": SOURCE_MESSAGE_ID,
        "source_type": source_type,
        "kind": kind,
        "user_id": USER_ID,
        "event_id": EVENT_ID,
        "rsvp_id": RSVP_ID,
        "rsvp_version": 1,
    }


def email_sent() -> EmailSentPayload:
    return EmailSentPayload(
        **_outcome("email.send", "confirmation"),
        recipient="ada@example.com",
        smtp_message_id="<173201.42@mail.example.org>",
    )


def email_failed() -> DeliveryFailedPayload:
    return DeliveryFailedPayload(
        **_outcome("email.send", "confirmation"),
        reason="smtp_permanent",
        error="550 5.1.1 <ada@example.com>: mailbox unavailable",
    )


def push_sent() -> PushSentPayload:
    return PushSentPayload(**_outcome("rsvp.created", "confirmation"), status="sent", delivered=2)


def push_failed() -> DeliveryFailedPayload:
    return DeliveryFailedPayload(
        **{**_outcome("push.send", "announcement"), "announcement_id": ANNOUNCEMENT_ID},
        reason="retries_exhausted",
        error="push service answered 503 five times",
    )


def subscription_expired() -> SubscriptionExpiredPayload:
    return SubscriptionExpiredPayload(
        user_id=USER_ID,
        subscription_id=UUID("7c3a9e51-4d2b-4f86-8a1e-6b0d5c9f2e47"),
        endpoint="https://push.example.net/wpush/v2/gAAAAABn",
        status_code=410,
        seen_at=datetime(2025, 11, 20, 17, 0, tzinfo=UTC),
    )


#: message type -> (the service that produces it, its sample payload)
SAMPLES: dict[str, tuple[str, Callable[[], Payload]]] = {
    "rsvp.created": ("calendar_service", lambda: rsvp("going", None, version=1, guests=2)),
    "rsvp.updated": ("calendar_service", lambda: rsvp("maybe", "going", version=2)),
    "rsvp.cancelled": ("calendar_service", lambda: rsvp("cancelled", "maybe", version=3)),
    "email.send": ("calendar_service", confirmation_command),
    "push.send": ("calendar_service", reminder_command),
    "email.sent": ("email_consumer", email_sent),
    "email.failed": ("email_consumer", email_failed),
    "push.sent": ("push_consumer", push_sent),
    "push.failed": ("push_consumer", push_failed),
    "push.subscription_expired": ("push_consumer", subscription_expired),
}


def sample_message(type_: str) -> Envelope[Any]:
    """A realistic message of ``type_``, starting a chain of its own."""
    producer, payload = SAMPLES[type_]
    return MESSAGE_TYPES[type_].first(payload(), producer=producer)


def body_of(message: Envelope[Any]) -> dict[str, Any]:
    """The message as a JSON object, ready to be tampered with."""
    body: dict[str, Any] = json.loads(message.model_dump_json())
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


ALL_TYPES = sorted(MESSAGE_TYPES)


def test_every_message_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(MESSAGE_TYPES)


# -- parsing ---------------------------------------------------------------------


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_a_message_round_trips_through_json_to_the_same_class_and_value(type_: str) -> None:
    message = sample_message(type_)

    parsed = parse_message(message.model_dump_json())

    assert type(parsed) is MESSAGE_TYPES[type_]
    assert parsed == message


def test_unknown_envelope_fields_are_ignored() -> None:
    message = sample_message("rsvp.created")
    body = {**body_of(message), "priority": "high"}

    parsed = parse_message(encode(body))

    assert parsed == message
    assert "priority" not in parsed.model_dump()


def test_unknown_payload_fields_are_ignored() -> None:
    message = sample_message("rsvp.created")
    body = body_of(message)
    body["data"]["dietary_needs"] = "vegetarian"
    body["data"]["event"]["room_capacity"] = 40

    parsed = parse_message(encode(body))

    assert parsed == message


@pytest.mark.parametrize(
    "path",
    [
        ("correlation_id",),
        ("producer",),
        ("data",),
        ("data", "version"),
        ("data", "attendee", "email"),
        ("data", "event", "starts_at"),
    ],
    ids=".".join,
)
def test_a_missing_required_field_is_refused_naming_the_field(path: tuple[str, ...]) -> None:
    body = body_of(sample_message("rsvp.created"))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]

    with pytest.raises(InvalidMessage) as refused:
        parse_message(encode(body))

    assert f"{'.'.join(path)}: Field required" in str(refused.value)


def test_a_body_without_type_is_refused() -> None:
    body = body_of(sample_message("rsvp.created"))
    del body["type"]

    with pytest.raises(InvalidMessage, match="'type'"):
        parse_message(encode(body))


@pytest.mark.parametrize("raw", [b"not json", b'{"type": "rsvp.created"', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidMessage, match="Invalid JSON"):
        parse_message(raw)


@pytest.mark.parametrize("raw", [b"[]", b'"rsvp.created"', b"null"])
def test_json_that_is_not_an_object_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        parse_message(raw)


def test_an_unknown_type_is_refused_naming_it() -> None:
    body = {**body_of(sample_message("rsvp.created")), "type": "rsvp.teleported"}

    with pytest.raises(InvalidMessage, match=re.escape("'rsvp.teleported'")):
        parse_message(encode(body))


def test_a_schema_version_newer_than_supported_is_refused_saying_so() -> None:
    newer = RsvpCreated.LATEST_VERSION + 1
    body = {**body_of(sample_message("rsvp.created")), "schema_version": newer}

    with pytest.raises(InvalidMessage, match=f"schema_version {newer} is newer than"):
        parse_message(encode(body))


def test_a_schema_version_below_one_is_refused() -> None:
    body = {**body_of(sample_message("rsvp.created")), "schema_version": 0}

    with pytest.raises(InvalidMessage, match="schema_version"):
        parse_message(encode(body))


def test_occurred_at_without_timezone_is_refused() -> None:
    body = {**body_of(sample_message("rsvp.created")), "occurred_at": "2025-11-20T18:30:00"}

    with pytest.raises(InvalidMessage, match=r"occurred_at: .*timezone"):
        parse_message(encode(body))


def test_occurred_at_with_another_offset_is_normalised_to_utc() -> None:
    body = {
        **body_of(sample_message("rsvp.created")),
        "occurred_at": "2025-11-20T20:30:00+02:00",
    }

    parsed = parse_message(encode(body))

    assert parsed.occurred_at == datetime(2025, 11, 20, 18, 30, tzinfo=UTC)
    assert parsed.occurred_at.utcoffset() == timedelta(0)
    assert body_of(parsed)["occurred_at"] == "2025-11-20T18:30:00Z"


@pytest.mark.parametrize("guests", [-1, 101])
def test_guests_outside_zero_to_a_hundred_are_refused(guests: int) -> None:
    body = body_of(sample_message("rsvp.created"))
    body["data"]["guests"] = guests

    with pytest.raises(InvalidMessage, match=r"data\.guests"):
        parse_message(encode(body))


@pytest.mark.parametrize("email", ["ada", "ada@", "@example.com", "ada at example.com"])
def test_an_invalid_attendee_email_is_refused(email: str) -> None:
    body = body_of(sample_message("rsvp.created"))
    body["data"]["attendee"]["email"] = email

    with pytest.raises(InvalidMessage, match=r"data\.attendee\.email"):
        parse_message(encode(body))


# -- causality -------------------------------------------------------------------


def test_first_makes_the_message_its_own_correlation_root() -> None:
    message = RsvpCreated.first(rsvp("going", None, version=1), producer="calendar_service")

    assert message.correlation_id == message.message_id
    assert message.causation_id is None


def test_first_keeps_a_message_id_chosen_by_the_producer() -> None:
    chosen = UUID("1b7e4c2d-9f3a-4e61-8c05-3a9d6f2b8e70")

    message = RsvpCreated.first(
        rsvp("going", None, version=1), producer="calendar_service", message_id=chosen
    )

    assert message.message_id == chosen
    assert message.correlation_id == chosen


def test_caused_by_keeps_the_correlation_id_and_points_causation_at_the_cause() -> None:
    created = sample_message("rsvp.created")
    command = EmailSend.caused_by(created, confirmation_command(), producer="calendar_service")

    sent = EmailSent.caused_by(command, email_sent(), producer="email_consumer")

    assert sent.correlation_id == created.message_id
    assert sent.causation_id == command.message_id
    assert sent.message_id not in {created.message_id, command.message_id}


# -- exported JSON Schemas -------------------------------------------------------


def json_schema(type_: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(export.json_schema_path(type_).read_text("utf-8"))
    return schema


def validator(type_: str) -> Draft202012Validator:
    return Draft202012Validator(
        json_schema(type_), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def test_the_checked_in_contract_files_are_not_stale() -> None:
    stale = export.stale_files()

    assert stale == [], f"stale: {[str(p) for p in stale]}; run `make schemas`"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_every_message_type_has_a_json_schema_file_for_it(type_: str) -> None:
    schema = json_schema(type_)

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{type_}.schema.json")
    assert schema["properties"]["type"]["const"] == type_
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_the_json_schema_accepts_the_sample_of_its_type(type_: str) -> None:
    body = body_of(sample_message(type_))

    errors = list(validator(type_).iter_errors(body))

    assert errors == []


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_the_json_schema_rejects_a_body_missing_a_required_payload_field(type_: str) -> None:
    message = sample_message(type_)
    body = body_of(message)
    field = next(n for n, f in type(message.data).model_fields.items() if f.is_required())
    del body["data"][field]

    with pytest.raises(SchemaValidationError, match=f"'{field}' is a required property"):
        validator(type_).validate(body)


def test_the_json_schema_requires_type_as_parse_message_does() -> None:
    body = body_of(sample_message("rsvp.created"))
    del body["type"]

    with pytest.raises(SchemaValidationError, match="'type' is a required property"):
        validator("rsvp.created").validate(body)


def test_the_json_schema_refuses_a_newer_schema_version_as_parse_message_does() -> None:
    body = body_of(sample_message("rsvp.created"))
    body["schema_version"] = RsvpCreated.LATEST_VERSION + 1

    with pytest.raises(SchemaValidationError, match="schema_version"):
        validator("rsvp.created").validate(body)


def test_the_json_schema_accepts_unknown_fields_as_parse_message_does() -> None:
    body = {**body_of(sample_message("rsvp.created")), "priority": "high"}
    body["data"]["dietary_needs"] = "vegetarian"

    errors = list(validator("rsvp.created").iter_errors(body))

    assert errors == []


# -- exported AsyncAPI document --------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(export.ASYNCAPI_PATH.read_text("utf-8"))
    return document


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer (``#/a/b``) through the document."""
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: Any = document
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {key!r} is looked up in a non-object"
        assert key in node, f"{ref}: no {key!r}"
        node = node[key]
    return node


def test_the_asyncapi_document_is_version_3(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"


def test_every_ref_in_the_asyncapi_document_resolves_inside_it(asyncapi: dict[str, Any]) -> None:
    refs = set(refs_in(asyncapi))

    for ref in refs:
        resolve(asyncapi, ref)
    assert "#/components/schemas/RsvpPayload" in refs  # nested models were lifted too


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_every_message_type_appears_in_the_asyncapi_document(
    asyncapi: dict[str, Any], type_: str
) -> None:
    message = asyncapi["components"]["messages"][type_]

    payload = resolve(asyncapi, message["payload"]["$ref"])
    correlation = resolve(asyncapi, message["correlationId"]["$ref"])
    assert payload["properties"]["type"]["const"] == type_
    assert correlation["location"] == "$message.payload#/correlation_id"


def flows(asyncapi: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(service, action, channel address, message type) of every operation."""
    result = set()
    for operation_id, operation in asyncapi["operations"].items():
        service = operation_id.split(".")[0]
        address = resolve(asyncapi, operation["channel"]["$ref"])["address"]
        for message_ref in operation["messages"]:
            name = resolve(asyncapi, message_ref["$ref"])["$ref"].rsplit("/", 1)[1]
            result.add((service, operation["action"], address, name))
    return result


RSVP_EVENTS = ("rsvp.created", "rsvp.updated", "rsvp.cancelled")
EMAIL_FOLLOWUPS = ("email.sent", "email.failed")
PUSH_FOLLOWUPS = ("push.sent", "push.failed", "push.subscription_expired")

DESIGNED_FLOWS = {
    *(("calendar_service", "send", "rsvp.events", t) for t in RSVP_EVENTS),
    ("calendar_service", "send", "notify.direct", "email.send"),
    ("calendar_service", "send", "notify.direct", "push.send"),
    *(("email_consumer", "receive", "email.rsvp_events", t) for t in RSVP_EVENTS),
    ("email_consumer", "receive", "email.commands", "email.send"),
    *(("email_consumer", "send", "notify.followups", t) for t in EMAIL_FOLLOWUPS),
    *(("push_consumer", "receive", "push.rsvp_events", t) for t in RSVP_EVENTS),
    ("push_consumer", "receive", "push.commands", "push.send"),
    *(("push_consumer", "send", "notify.followups", t) for t in PUSH_FOLLOWUPS),
    *(
        ("calendar_service", "receive", "calendar.followups", t)
        for t in (*EMAIL_FOLLOWUPS, *PUSH_FOLLOWUPS)
    ),
}


def test_the_asyncapi_operations_say_who_sends_and_receives_what(
    asyncapi: dict[str, Any],
) -> None:
    assert flows(asyncapi) == DESIGNED_FLOWS


def test_commands_are_published_with_the_routing_key_of_their_queue(
    asyncapi: dict[str, Any],
) -> None:
    operations = asyncapi["operations"]

    email = operations["calendar_service.send.email.send"]["bindings"]["amqp"]
    push = operations["calendar_service.send.push.send"]["bindings"]["amqp"]

    assert email["cc"] == ["email.commands"]
    assert push["cc"] == ["push.commands"]


@pytest.mark.parametrize(
    ("address", "exchange_type"),
    [
        ("rsvp.events", "fanout"),
        ("notify.direct", "direct"),
        ("notify.followups", "topic"),
        ("dlx", "direct"),
    ],
)
def test_exchange_channels_carry_their_amqp_binding(
    asyncapi: dict[str, Any], address: str, exchange_type: str
) -> None:
    channel = asyncapi["channels"][f"exchange.{address}"]

    amqp = channel["bindings"]["amqp"]
    assert channel["address"] == address
    assert amqp["is"] == "routingKey"
    assert amqp["exchange"] == {
        "name": address,
        "type": exchange_type,
        "durable": True,
        "autoDelete": False,
        "vhost": "rsvp",
    }


# -- the exporter ----------------------------------------------------------------


@pytest.fixture
def export_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the exporter at an empty directory instead of the checked-in files."""
    monkeypatch.setattr(export, "JSON_SCHEMA_DIR", tmp_path / "json")
    monkeypatch.setattr(export, "ASYNCAPI_PATH", tmp_path / "asyncapi.json")
    return tmp_path


def test_check_names_the_stale_files_says_how_to_fix_them_and_writes_nothing(
    export_to: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = export.main(["--check"])

    err = capsys.readouterr().err
    assert status == 1
    assert "asyncapi.json (missing)" in err
    assert "rsvp.created.schema.json (missing)" in err
    assert "run `make schemas`" in err
    assert list(export_to.iterdir()) == []


def test_check_passes_once_the_files_are_written(export_to: Path) -> None:
    export.main([])

    status = export.main(["--check"])

    assert status == 0
    assert len(list((export_to / "json").glob("*.schema.json"))) == len(MESSAGE_TYPES)


def test_writing_removes_the_schema_of_a_type_that_no_longer_exists(export_to: Path) -> None:
    export.main([])
    obsolete = export_to / "json" / "rsvp.teleported.schema.json"
    obsolete.write_text("{}\n")
    assert export.stale_files() == [obsolete]

    export.main([])

    assert not obsolete.exists()
    assert export.stale_files() == []


def test_rendering_is_deterministic() -> None:
    assert export.render_all() == export.render_all()
