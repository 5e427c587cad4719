"""Which broker accounts the dead-letter paths connect as: settings only, no I/O."""

from __future__ import annotations

from calendar_service.config import Settings
from calendar_service.deadletters.archiver import ArchiverSettings


def test_admin_api_replays_as_the_narrow_dlq_admin_account_not_as_ops() -> None:
    settings = Settings(
        amqp_url="amqp://calendar:calendar@rabbit:5672/rsvp",
        rabbitmq_management_url="http://ops:s%40cret@rabbit:15672",
    )

    assert settings.dead_letter_amqp_url == "amqp://dlq-admin:dlq-admin@rabbit:5672/rsvp"
    assert Settings(admin_amqp_url="amqp://x:y@h/v").dead_letter_amqp_url == "amqp://x:y@h/v"


def test_the_archiver_reads_dead_letters_as_the_management_account() -> None:
    settings = ArchiverSettings(
        amqp_url="amqp://calendar:calendar@rabbit:5672/rsvp",
        rabbitmq_management_url="http://ops:s%40cret@rabbit:15672",
        admin_amqp_url="amqp://dlq-admin:other@rabbit:5672/rsvp",
    )

    assert settings.archiver_amqp_url == "amqp://ops:s%40cret@rabbit:5672/rsvp"
