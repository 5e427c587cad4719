"""What a process refuses to start with under ``APP_ENV=prod``: values everyone can read.

The development defaults (broker and database passwords equal to their user
names, the VAPID key checked into compose.yaml, the JWT secret in the code)
make ``make run`` and ``docker compose up`` work out of the box; in
production each would hand the system to whoever read this repository. Every
check here returns one sentence naming the setting and what to do, or None;
each service's Settings lists the ones that apply to what it uses
(``production_problems``), and ``ServiceSettings`` refuses to start when any
answers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from shared.messaging.topology import BROKER_USERS

#: Passwords of the development accounts: every broker user of
#: broker/definitions.json (its password is its name), RabbitMQ's ``guest``,
#: compose's ``postgres`` superuser. Database service roles are created with
#: their name as password outside prod, which :func:`development_password` catches too.
DEVELOPMENT_PASSWORDS = frozenset({user.name for user in BROKER_USERS} | {"guest", "postgres"})

#: Private keys that are published (compose.yaml's dev default): base64url raw.
PUBLISHED_VAPID_KEYS = ("wKugqzBAThZyMuv2RQihkIoYqg6LWjcryKMI8bMGpdc",)


def _scalar(raw_key: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(raw_key + "=" * (-len(raw_key) % 4)), "big")


_PUBLISHED_VAPID_SCALARS = frozenset(_scalar(key) for key in PUBLISHED_VAPID_KEYS)


def development_password(setting: str, url: str, *, default_user: str | None = None) -> str | None:
    """A URL whose password is a development one (or, without a user, ``default_user``'s)."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username is not None else default_user
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and parts.username is None:
        password = default_user  # e.g. amqp://host/vhost connects as guest:guest
    if password is None or (password != user and password not in DEVELOPMENT_PASSWORDS):
        return None
    return (
        f"{setting} uses the development password of {user or 'its user'!s}: set the account's"
        " real password on the server (rabbitmqctl change_password / ALTER ROLE … PASSWORD)"
        f" and put it in {setting}"
    )


def development_jwt_secret(secret: str, development_secret: str) -> str | None:
    if secret != development_secret:
        return None
    return "JWT_SECRET is the development secret in the code: set a random one of 32+ characters"


def admin_emails_given(admin_emails: Iterable[str]) -> str | None:
    if not any(True for _ in admin_emails):
        return None
    return (
        "ADMIN_EMAILS must be empty: anyone registering such an address would become admin;"
        " grant the role with `python -m calendar_service.admin grant EMAIL`"
    )


def published_vapid_key(private_value: int | None, how_to_make_one: str) -> str | None:
    """The push consumer's key (its private scalar): missing, or one that is published."""
    if private_value is None:
        return f"VAPID_PRIVATE_KEY must be set; {how_to_make_one}"
    if private_value in _PUBLISHED_VAPID_SCALARS:
        return (
            "VAPID_PRIVATE_KEY is the published development key of compose.yaml: anyone could"
            f" sign pushes as this service; {how_to_make_one}"
        )
    return None


def smtp_login_without_tls(username: str | None, starttls: bool) -> str | None:
    if username is None or starttls:
        return None
    return (
        "SMTP_USERNAME is set but SMTP_STARTTLS=false: the SMTP password would cross the"
        " network in clear; set SMTP_STARTTLS=true (the mail server must offer STARTTLS)"
    )


def refusal(problems: Iterable[str | None]) -> str | None:
    """One message for every problem found, or None when there is none."""
    found = [problem for problem in problems if problem]
    if not found:
        return None
    return "refusing to start with APP_ENV=prod: " + "; ".join(found)
