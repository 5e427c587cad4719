"""Commands at the API: resending a confirmation, posting an announcement, moving an event.

The API only writes: a resend is one ``email.send`` row in the outbox, an
announcement one row the scheduler fans out later. These tests read what was
written in the run's database; ``test_commands_delivery.py`` follows the
commands through the broker to the mail server.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from shared.schemas import EmailSend, parse_message
from tests.support.api import (
    api_client,
    create_event,
    post_rsvp,
    register,
    register_with_issued_token,
)

pytestmark = pytest.mark.integration


def case_id(value: object) -> str:
    """The request body as a test id; the expected field goes unnamed."""
    return repr(value)[:40] if isinstance(value, dict) else ""


@pytest.fixture(scope="module")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Olga Organizer")


@pytest.fixture(scope="module")
async def alice(client: httpx.AsyncClient, calendar_settings: Settings) -> dict[str, Any]:
    return await register_with_issued_token(client, calendar_settings, name="Alice Attendee")


@pytest.fixture(scope="module")
async def bob(client: httpx.AsyncClient, calendar_settings: Settings) -> dict[str, Any]:
    return await register_with_issued_token(client, calendar_settings, name="Bob Bystander")


@pytest.fixture
async def event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    return await create_event(client, organizer, capacity=10, location="Main hall")


async def answered(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any], status: str = "going"
) -> dict[str, Any]:
    response = await post_rsvp(client, event, user, status)
    assert response.status_code == 201, response.text
    rsvp: dict[str, Any] = response.json()
    return rsvp


async def resend(
    client: httpx.AsyncClient, rsvp_id: str, user: dict[str, Any] | None
) -> httpx.Response:
    headers = user["headers"] if user is not None else {}
    return await client.post(f"/rsvps/{rsvp_id}/resend", headers=headers)


async def outbox_row(database: asyncpg.Connection, message_id: str) -> asyncpg.Record:
    row = await database.fetchrow(
        "SELECT message_id, message_type, exchange, routing_key, body FROM outbox"
        " WHERE message_id = $1",
        uuid.UUID(message_id),
    )
    assert row is not None, f"no outbox row for {message_id}"
    return row


# --- resend: what it writes -----------------------------------------------------------------


async def test_the_owner_resending_gets_202_and_an_email_send_command_in_the_outbox(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = await answered(client, event, alice)
    correlation_id = uuid.uuid4()

    response = await client.post(
        f"/rsvps/{rsvp['id']}/resend",
        headers={**alice["headers"], "X-Correlation-ID": str(correlation_id)},
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["rsvp_id"] == rsvp["id"]
    assert accepted["channel"] == "email"
    row = await outbox_row(database, accepted["command_id"])
    assert row["message_type"] == "email.send"
    assert row["exchange"] == "notify.direct"
    assert row["routing_key"] == "email.commands"
    command = parse_message(row["body"])
    assert isinstance(command, EmailSend)
    assert str(command.message_id) == accepted["command_id"]
    assert command.correlation_id == correlation_id
    assert command.data.kind == "confirmation"
    assert str(command.data.rsvp_id) == rsvp["id"]
    assert command.data.rsvp_version == rsvp["version"]
    assert command.data.status == "going"
    assert command.data.recipient.email == alice["email"]
    assert str(command.data.event.event_id) == event["id"]


async def test_a_resend_restates_the_rsvp_as_it_stands_after_a_change(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = await answered(client, event, alice)
    changed = await post_rsvp(client, event, alice, "maybe")
    assert changed.status_code == 200

    response = await resend(client, rsvp["id"], alice)

    command = parse_message((await outbox_row(database, response.json()["command_id"]))["body"])
    assert command.data.status == "maybe"
    assert command.data.rsvp_version == 2


async def test_after_a_resend_the_rsvp_shows_its_email_pending_again(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = await answered(client, event, alice)
    # as if the follow-ups had reported the first confirmation
    await database.execute(
        "UPDATE delivery_status SET status = 'sent' WHERE rsvp_id = $1", uuid.UUID(rsvp["id"])
    )
    before = await client.get(f"/rsvps/{rsvp['id']}", headers=alice["headers"])
    assert before.json()["notifications"] == {"email": "sent", "push": "sent"}

    response = await resend(client, rsvp["id"], alice)

    assert response.status_code == 202
    after = await client.get(f"/rsvps/{rsvp['id']}", headers=alice["headers"])
    assert after.json()["notifications"] == {"email": "pending", "push": "sent"}


# --- resend: who may ------------------------------------------------------------------------


async def test_resending_someone_elses_rsvp_is_a_403_and_writes_nothing(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
    bob: dict[str, Any],
    organizer: dict[str, Any],
) -> None:
    rsvp = await answered(client, event, alice)
    commands_before = await commands_about(database, rsvp["id"])

    by_bob = await resend(client, rsvp["id"], bob)
    by_organizer = await resend(client, rsvp["id"], organizer)

    assert by_bob.status_code == 403
    assert by_organizer.status_code == 403  # the organizer may read it, not resend it
    assert await commands_about(database, rsvp["id"]) == commands_before


async def commands_about(database: asyncpg.Connection, rsvp_id: str) -> int:
    count: int = await database.fetchval(
        "SELECT count(*) FROM outbox WHERE message_type = 'email.send'"
        " AND convert_from(body, 'UTF8')::jsonb->'data'->>'rsvp_id' = $1",
        rsvp_id,
    )
    return count


async def test_resending_an_unknown_rsvp_is_a_404(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await resend(client, str(uuid.uuid4()), alice)

    assert response.status_code == 404
    assert "RSVP" in response.json()["detail"]


async def test_resending_without_a_token_is_a_401(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    rsvp = await answered(client, event, alice)

    response = await resend(client, rsvp["id"], None)

    assert response.status_code == 401


# --- resend: the rate limit -----------------------------------------------------------------
# Counters live in the shared Redis under each RSVP's id: fresh RSVPs, fresh counters.


async def test_the_fourth_resend_within_the_hour_is_a_429_with_retry_after(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = await answered(client, event, alice)
    for _ in range(3):
        assert (await resend(client, rsvp["id"], alice)).status_code == 202

    refused = await resend(client, rsvp["id"], alice)

    assert refused.status_code == 429
    assert "3/hour" in refused.json()["detail"]
    retry_after = int(refused.headers["Retry-After"])  # delta-seconds, not a date
    assert 3000 < retry_after <= 3600
    assert await commands_about(database, rsvp["id"]) == 3


async def test_each_rsvp_has_a_resend_limit_of_its_own(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    spent = await answered(client, event, alice)
    other = await answered(client, event, bob)
    for _ in range(3):
        await resend(client, spent["id"], alice)
    assert (await resend(client, spent["id"], alice)).status_code == 429

    response = await resend(client, other["id"], bob)

    assert response.status_code == 202


async def test_the_resend_limit_is_a_setting(
    calendar_settings: Settings, organizer: dict[str, Any], alice: dict[str, Any]
) -> None:
    strict = calendar_settings.model_copy(update={"resend_limit": "1/minute"})
    async with api_client(strict) as client:
        event = await create_event(client, organizer)
        rsvp = await answered(client, event, alice)
        first = await resend(client, rsvp["id"], alice)

        second = await resend(client, rsvp["id"], alice)

    assert first.status_code == 202
    assert second.status_code == 429
    assert "1/minute" in second.json()["detail"]
    assert 1 <= int(second.headers["Retry-After"]) <= 60


def test_a_resend_limit_that_does_not_parse_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(resend_limit="three an hour")


async def test_a_resend_while_the_rate_limiter_is_unreachable_is_a_503_and_writes_nothing(
    calendar_settings: Settings,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    # nothing listens on port 1: the limiter fails closed rather than letting bursts through
    unreachable = calendar_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with api_client(unreachable) as client:
        event = await create_event(client, organizer)
        rsvp = await answered(client, event, alice)

        response = await resend(client, rsvp["id"], alice)

    assert response.status_code == 503
    assert await commands_about(database, rsvp["id"]) == 0


# --- announcements: posting -----------------------------------------------------------------


def announcement(**fields: Any) -> dict[str, Any]:
    return {
        "subject": "Room change",
        "body": "We moved to room 2.",
        "channels": ["email"],
        **fields,
    }


async def announce(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any] | None, **fields: Any
) -> httpx.Response:
    headers = user["headers"] if user is not None else {}
    return await client.post(
        f"/events/{event['id']}/announcements", json=announcement(**fields), headers=headers
    )


async def test_the_organizer_announcing_gets_202_with_the_announcement_id(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    organizer: dict[str, Any],
) -> None:
    correlation_id = uuid.uuid4()

    response = await client.post(
        f"/events/{event['id']}/announcements",
        json=announcement(channels=["email", "push"]),
        headers={**organizer["headers"], "X-Correlation-ID": str(correlation_id)},
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["event_id"] == event["id"]
    assert accepted["channels"] == ["email", "push"]
    stored = await database.fetchrow(
        "SELECT subject, body, channels, correlation_id, fanned_out_at FROM announcements"
        " WHERE id = $1",
        uuid.UUID(accepted["id"]),
    )
    assert stored is not None
    assert (stored["subject"], stored["body"]) == ("Room change", "We moved to room 2.")
    assert stored["channels"] == ["email", "push"]
    assert stored["correlation_id"] == correlation_id  # the follow-ups will carry it
    assert stored["fanned_out_at"] is None  # the scheduler fans out, not the request


async def test_channels_default_to_email_and_push(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    response = await client.post(
        f"/events/{event['id']}/announcements",
        json={"subject": "Hello", "body": "See you there."},
        headers=organizer["headers"],
    )

    assert response.status_code == 202
    assert response.json()["channels"] == ["email", "push"]


async def test_someone_other_than_the_organizer_announcing_is_a_403(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    await answered(client, event, alice)

    response = await announce(client, event, alice)

    assert response.status_code == 403
    stored = await database.fetchval(
        "SELECT count(*) FROM announcements WHERE event_id = $1", uuid.UUID(event["id"])
    )
    assert stored == 0


async def test_announcing_to_an_unknown_event_is_a_404(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await announce(client, {"id": str(uuid.uuid4())}, organizer)

    assert response.status_code == 404


async def test_announcing_without_a_token_is_a_401(
    client: httpx.AsyncClient, event: dict[str, Any]
) -> None:
    assert (await announce(client, event, None)).status_code == 401


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"subject": "x" * 201}, ["body", "subject"]),
        ({"body": "x" * 5001}, ["body", "body"]),
        ({"subject": ""}, ["body", "subject"]),
        ({"subject": "   "}, ["body", "subject"]),
        ({"body": "\n\n"}, ["body", "body"]),
        ({"subject": "Hi\r\nBcc: victim@evil.test"}, ["body", "subject"]),
        ({"subject": "Hi\nBcc: victim@evil.test"}, ["body", "subject"]),
        ({"subject": "Hi\rBcc: victim@evil.test"}, ["body", "subject"]),
        ({"subject": "Nul\x00byte"}, ["body", "subject"]),
        ({"body": "bell\x07"}, ["body", "body"]),
        ({"channels": []}, ["body", "channels"]),
        ({"channels": ["email", "email"]}, ["body", "channels"]),
        ({"channels": ["sms"]}, ["body", "channels"]),
        ({"channels": ["email", "push", "email"]}, ["body", "channels"]),
        ({"channels": "email"}, ["body", "channels"]),
    ],
    ids=case_id,
)
async def test_an_invalid_announcement_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    organizer: dict[str, Any],
    fields: dict[str, Any],
    loc: list[str],
) -> None:
    response = await announce(client, event, organizer, **fields)

    assert response.status_code == 422, response.text
    assert loc in [error["loc"][:2] for error in response.json()["detail"]]


async def test_an_announcement_at_the_length_limits_is_accepted_with_its_paragraphs(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    organizer: dict[str, Any],
) -> None:
    body = ("Line one\r\nline two\n\n" + "x" * 4980)[:5000]

    response = await announce(client, event, organizer, subject="s" * 200, body=body)

    assert response.status_code == 202, response.text
    stored = await database.fetchval(
        "SELECT body FROM announcements WHERE id = $1", uuid.UUID(response.json()["id"])
    )
    assert stored.startswith("Line one\nline two\n\n")  # CRLF normalised, paragraphs kept


# --- announcements: progress ----------------------------------------------------------------


async def test_the_organizer_sees_progress_counts_per_channel(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    posted = (await announce(client, event, organizer, channels=["email", "push"])).json()

    response = await client.get(
        f"/events/{event['id']}/announcements/{posted['id']}", headers=organizer["headers"]
    )

    assert response.status_code == 200, response.text
    progress = response.json()
    assert progress["id"] == posted["id"]
    assert progress["subject"] == "Room change"
    assert progress["fanned_out"] is False  # no scheduler runs in these tests
    assert progress["recipients"] == 0
    zero = {"queued": 0, "sent": 0, "failed": 0, "skipped": 0}
    assert progress["counts"] == {"email": zero, "push": zero}


async def test_someone_other_than_the_organizer_cannot_see_the_progress(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    organizer: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    posted = (await announce(client, event, organizer)).json()
    url = f"/events/{event['id']}/announcements/{posted['id']}"

    assert (await client.get(url, headers=alice["headers"])).status_code == 403
    assert (await client.get(url)).status_code == 401


async def test_an_unknown_announcement_or_one_of_another_event_is_a_404(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    posted = (await announce(client, event, organizer)).json()
    other = await create_event(client, organizer)

    unknown = await client.get(
        f"/events/{event['id']}/announcements/{uuid.uuid4()}", headers=organizer["headers"]
    )
    elsewhere = await client.get(
        f"/events/{other['id']}/announcements/{posted['id']}", headers=organizer["headers"]
    )

    assert unknown.status_code == 404
    assert elsewhere.status_code == 404


# --- moving an event ------------------------------------------------------------------------


async def patch(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any], **fields: Any
) -> httpx.Response:
    return await client.patch(f"/events/{event['id']}", json=fields, headers=user["headers"])


async def test_the_organizer_moving_the_start_sees_the_new_time_at_once(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    await client.get(f"/events/{event['id']}")
    cached = await client.get(f"/events/{event['id']}")
    assert cached.headers["x-cache"] == "hit"
    new_start = datetime(2031, 5, 1, 18, 0, tzinfo=UTC)

    response = await patch(client, event, organizer, starts_at=new_start.isoformat())

    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["starts_at"]) == new_start
    read = await client.get(f"/events/{event['id']}")
    assert read.headers["x-cache"] == "miss"  # the cached copy was dropped
    assert datetime.fromisoformat(read.json()["starts_at"]) == new_start
    assert read.json()["title"] == event["title"]  # what was not sent is kept


async def test_fields_left_out_keep_their_value_and_null_clears_an_optional_one(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    response = await patch(client, event, organizer, title="Renamed", location=None)

    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["title"], changed["location"]) == ("Renamed", None)
    assert changed["capacity"] == event["capacity"]
    assert changed["starts_at"] == event["starts_at"]


async def test_an_end_before_the_start_is_a_422_and_changes_nothing(
    client: httpx.AsyncClient, event: dict[str, Any], organizer: dict[str, Any]
) -> None:
    starts_at = datetime.fromisoformat(event["starts_at"])
    too_early = (starts_at - timedelta(minutes=1)).isoformat()

    ends_first = await patch(client, event, organizer, ends_at=too_early)
    both = await patch(
        client,
        event,
        organizer,
        starts_at=(starts_at + timedelta(hours=2)).isoformat(),
        ends_at=(starts_at + timedelta(hours=1)).isoformat(),
    )

    assert ends_first.status_code == 422
    assert both.status_code == 422
    read = (await client.get(f"/events/{event['id']}")).json()
    assert (read["starts_at"], read["ends_at"]) == (event["starts_at"], None)


async def test_moving_the_start_past_a_set_end_is_a_422(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    starts_at = datetime.now(UTC) + timedelta(days=3)
    event = await create_event(
        client,
        organizer,
        starts_at=starts_at.isoformat(),
        ends_at=(starts_at + timedelta(hours=2)).isoformat(),
    )

    response = await patch(
        client, event, organizer, starts_at=(starts_at + timedelta(hours=3)).isoformat()
    )

    assert response.status_code == 422


async def test_a_capacity_below_the_seats_taken_is_a_409_and_keeps_the_old_one(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    organizer: dict[str, Any],
    alice: dict[str, Any],
    bob: dict[str, Any],
) -> None:
    assert (await post_rsvp(client, event, alice, "going", guests=2)).status_code == 201
    assert (await post_rsvp(client, event, bob, "going")).status_code == 201  # 4 seats

    too_small = await patch(client, event, organizer, capacity=3)
    just_enough = await patch(client, event, organizer, capacity=4)

    assert too_small.status_code == 409
    assert just_enough.status_code == 200
    assert just_enough.json()["rsvp_counts"]["seats_left"] == 0


async def test_someone_other_than_the_organizer_changing_an_event_is_a_403(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    response = await patch(client, event, alice, title="Hijacked")

    assert response.status_code == 403
    assert (await client.get(f"/events/{event['id']}")).json()["title"] == event["title"]


async def test_changing_an_unknown_event_is_a_404(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await patch(client, {"id": str(uuid.uuid4())}, organizer, title="Ghost")

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": "  "}, "title"),
        ({"starts_at": None}, "starts_at"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"starts_at": "2031-05-01T18:00:00"}, "starts_at"),  # no offset
        ({"capacity": 0}, "capacity"),
        ({"title": "Line\nbreak"}, "title"),
    ],
    ids=case_id,
)
async def test_an_invalid_change_is_a_422(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    organizer: dict[str, Any],
    fields: dict[str, Any],
    field: str,
) -> None:
    response = await patch(client, event, organizer, **fields)

    assert response.status_code == 422, response.text
    assert field in response.text


async def test_announcements_are_limited_per_event_with_a_429(
    calendar_settings: Settings, organizer: dict[str, Any]
) -> None:
    strict = calendar_settings.model_copy(update={"announcement_limit": "2/minute"})
    async with api_client(strict) as client:
        busy, quiet = await create_event(client, organizer), await create_event(client, organizer)
        accepted = [await announce(client, busy, organizer) for _ in range(2)]

        refused = await announce(client, busy, organizer)
        elsewhere = await announce(client, quiet, organizer)

    assert [r.status_code for r in accepted] == [202, 202]
    assert refused.status_code == 429, refused.text
    assert "2/minute" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert elsewhere.status_code == 202
