"""Where the admin API's dead-letter operations connect: settings only, no I/O."""

from __future__ import annotations

from calendar_service.config import Settings


def test_admin_api_reaches_the_broker_as_the_management_account() -> None:
    settings = Settings(
        amqp_url="amqp://calendar:calendar@rabbit:5672/rsvp",
        rabbitmq_management_url="http://ops:s%40cret@rabbit:15672",
    )

    assert settings.dead_letter_amqp_url == "amqp://ops:s%40cret@rabbit:5672/rsvp"
    assert Settings(admin_amqp_url="amqp://x:y@h/v").dead_letter_amqp_url == "amqp://x:y@h/v"
