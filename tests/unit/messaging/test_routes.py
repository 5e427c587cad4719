"""The topology's route table: every message type has one route its publisher may use."""

from __future__ import annotations

import pytest

from calendar_service.outbox import calendar_route
from shared.messaging.routing import check_routes, types_received_by
from shared.messaging.topology import (
    CALENDAR_FOLLOWUPS,
    COMMANDS_EXCHANGE,
    EMAIL_COMMANDS,
    EVENTS_EXCHANGE,
    ROUTES,
)
from shared.schemas import MESSAGE_TYPES
from tests.support.runtime import email_send, email_sent_for, rsvp_created


def test_every_message_type_has_a_route_its_publisher_may_write_to() -> None:
    check_routes()

    assert set(ROUTES) == set(MESSAGE_TYPES)


def test_the_calendar_publishes_rsvp_events_to_the_fanout_and_commands_to_one_queue() -> None:
    event, command = calendar_route(rsvp_created().type), calendar_route(email_send().type)

    assert (event.exchange, event.routing_key) == (EVENTS_EXCHANGE, "")
    assert (command.exchange, command.routing_key) == (COMMANDS_EXCHANGE, EMAIL_COMMANDS.name)


def test_the_outbox_refuses_a_message_the_calendar_does_not_publish() -> None:
    with pytest.raises(ValueError, match=r"does not publish 'email\.sent'"):
        calendar_route(email_sent_for(rsvp_created()).type)


def test_the_calendar_receives_every_follow_up() -> None:
    followups = [t for t, route in ROUTES.items() if route.publisher in ("email", "push")]

    assert types_received_by(CALENDAR_FOLLOWUPS) == followups
