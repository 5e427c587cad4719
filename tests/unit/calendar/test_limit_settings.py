"""Settings of who is admin and of the limits: what start-up refuses, no I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from calendar_service.config import Settings

REAL_SECRET = "a-real-production-secret-of-forty-chars!"
REAL_BROKER = "amqp://calendar:a-real-password@rabbit/rsvp"


def test_admin_emails_are_refused_in_prod_with_the_way_to_grant() -> None:
    with pytest.raises(ValidationError, match=r"calendar_service\.admin grant"):
        Settings(app_env="prod", jwt_secret=REAL_SECRET, admin_emails="admin@example.com")


def test_prod_starts_without_admin_emails() -> None:
    production = Settings(app_env="prod", jwt_secret=REAL_SECRET, amqp_url=REAL_BROKER)
    assert production.admin_emails == frozenset()


def test_admin_emails_make_admins_in_dev_and_test() -> None:
    for env in ("dev", "test"):
        assert Settings(app_env=env, admin_emails="A@x.org").admin_emails == {"a@x.org"}


LIMITS = [n for n in Settings.model_fields if n.endswith("_limit") or n.startswith("rate_limit_")]


@pytest.mark.parametrize("name", LIMITS)
def test_a_limit_that_does_not_parse_is_refused_at_start_up(name: str) -> None:
    assert len(LIMITS) == 8  # resend, announcement, and the six of design §8 and RSVP changes
    with pytest.raises(ValidationError, match="is not a rate limit"):
        Settings(**{name: "five a minute"})
