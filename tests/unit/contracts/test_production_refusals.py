"""APP_ENV=prod refuses the values anyone can read in this repository; dev and test run on them.

Each process's Settings is built as its `python -m …` builds it; the refusal
must name the setting and say what to do. No I/O.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from calendar_service.config import ApiSettings
from calendar_service.config import Settings as CalendarSettings
from calendar_service.deadletters.archiver import ArchiverSettings
from email_consumer.config import Settings as EmailSettings
from push_consumer.config import Settings as PushSettings
from push_consumer.vapid import generate_private_key, load_private_key, private_key_text
from shared.production import PUBLISHED_VAPID_KEYS

REAL_JWT = "a-real-production-secret-of-forty-chars!"
REAL_VAPID = private_key_text(generate_private_key())

#: What an operator sets in production: every account with its real password.
PRODUCTION: dict[type[BaseSettings], dict[str, Any]] = {
    ApiSettings: {
        "jwt_secret": REAL_JWT,
        "amqp_url": "amqp://calendar:Kq3v-real@rabbit/rsvp",
        "admin_amqp_url": "amqp://dlq-admin:Zr8t-real@rabbit/rsvp",
        "database_url": "postgresql://rsvp_api:Xw2p-real@db/rsvp",
    },
    CalendarSettings: {
        "jwt_secret": REAL_JWT,
        "amqp_url": "amqp://calendar:Kq3v-real@rabbit/rsvp",
        "database_url": "postgresql://rsvp_relay:Xw2p-real@db/rsvp",
    },
    ArchiverSettings: {
        "jwt_secret": REAL_JWT,
        "amqp_url": "amqp://calendar:Kq3v-real@rabbit/rsvp",
        "rabbitmq_management_url": "http://ops:Pp5s-real@rabbit:15672",
        "database_url": "postgresql://rsvp_archiver:Xw2p-real@db/rsvp",
    },
    EmailSettings: {
        "amqp_url": "amqp://email:Em4l-real@rabbit/rsvp",
        "smtp_username": "rsvp",
        "smtp_password": "smtp-real",
        "smtp_starttls": True,
    },
    PushSettings: {
        "amqp_url": "amqp://push:Pu5h-real@rabbit/rsvp",
        "vapid_private_key": REAL_VAPID,
    },
}


@pytest.mark.parametrize("settings", PRODUCTION, ids=lambda cls: cls.__module__)
def test_each_process_starts_in_prod_with_real_secrets(settings: type[BaseSettings]) -> None:
    settings(app_env="prod", **PRODUCTION[settings])


@pytest.mark.parametrize("settings", PRODUCTION, ids=lambda cls: cls.__module__)
def test_each_process_starts_in_dev_and_test_on_the_defaults(settings: type[BaseSettings]) -> None:
    for env in ("dev", "test"):
        settings(app_env=env)


@pytest.mark.parametrize(
    ("settings", "setting", "value"),
    [
        (ApiSettings, "amqp_url", "amqp://calendar:calendar@rabbit/rsvp"),
        (ApiSettings, "amqp_url", "amqp://rabbit/rsvp"),  # no user: guest/guest
        (ApiSettings, "admin_amqp_url", "amqp://dlq-admin:dlq-admin@rabbit/rsvp"),
        (ApiSettings, "admin_amqp_url", "amqp://dlq-admin:ops@rabbit/rsvp"),
        (ArchiverSettings, "rabbitmq_management_url", "http://ops:ops@rabbit:15672"),
        (EmailSettings, "amqp_url", "amqp://email:email@rabbit/rsvp"),
        (PushSettings, "amqp_url", "amqp://push:push@rabbit/rsvp"),
        (PushSettings, "amqp_url", "amqp://guest:guest@rabbit/rsvp"),
    ],
)
def test_prod_refuses_the_development_broker_passwords(
    settings: type[BaseSettings], setting: str, value: str
) -> None:
    with pytest.raises(ValidationError, match=rf"{setting.upper()} uses the development password"):
        settings(app_env="prod", **{**PRODUCTION[settings], setting: value})


def test_api_in_prod_without_its_replay_account_refuses_the_default_one() -> None:
    values = {k: v for k, v in PRODUCTION[ApiSettings].items() if k != "admin_amqp_url"}

    with pytest.raises(ValidationError, match="ADMIN_AMQP_URL uses the development password"):
        ApiSettings(app_env="prod", **values)


def test_prod_refuses_a_database_role_whose_password_is_its_name() -> None:
    url = "postgresql://rsvp_push:rsvp_push@db/rsvp"

    with pytest.raises(ValidationError, match="DATABASE_URL uses the development password"):
        PushSettings(app_env="prod", **{**PRODUCTION[PushSettings], "database_url": url})


def test_prod_refuses_the_published_vapid_key_in_any_encoding() -> None:
    published = PUBLISHED_VAPID_KEYS[0]
    pem = (
        load_private_key(published)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )

    for key in (published, pem):
        with pytest.raises(ValidationError, match="VAPID_PRIVATE_KEY is the published"):
            PushSettings(app_env="prod", **{**PRODUCTION[PushSettings], "vapid_private_key": key})
    assert PushSettings(app_env="dev", vapid_private_key=published).vapid_private_key


def test_prod_refuses_an_smtp_login_without_tls() -> None:
    values = {**PRODUCTION[EmailSettings], "smtp_starttls": False}

    with pytest.raises(ValidationError, match="SMTP_STARTTLS=true"):
        EmailSettings(app_env="prod", **values)
    EmailSettings(app_env="prod", **{**values, "smtp_username": None, "smtp_password": None})


def test_every_problem_is_named_in_one_refusal() -> None:
    with pytest.raises(ValidationError) as refused:
        ApiSettings(app_env="prod", admin_emails="a@example.com")

    message = str(refused.value)
    for setting in ("AMQP_URL", "ADMIN_AMQP_URL", "JWT_SECRET", "ADMIN_EMAILS"):
        assert setting in message
