"""``DB_POOL_TIMEOUT_S``: one name and one meaning in every process that uses PostgreSQL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from calendar_service.config import ApiSettings, Settings
from calendar_service.deadletters.archiver import ArchiverSettings
from email_consumer.config import Settings as EmailSettings
from push_consumer.config import Settings as PushSettings
from shared.dlq.cli import DlqSettings
from shared.settings import ServiceSettings

#: The settings of the API, the relay, the scheduler and the reports consumer
#: (Settings), the archiver, both consumers and ``rsvp-dlq``.
EVERY_PROCESS: list[type[BaseSettings]] = [
    ApiSettings,
    Settings,
    ArchiverSettings,
    EmailSettings,
    PushSettings,
    DlqSettings,
]


@pytest.mark.parametrize("settings", EVERY_PROCESS, ids=lambda kind: kind.__module__)
def test_every_process_reads_the_same_pool_timeout(
    settings: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "2.5")

    assert settings().db_pool_timeout_s == 2.5


@pytest.mark.parametrize("settings", EVERY_PROCESS, ids=lambda kind: kind.__module__)
def test_a_pool_waits_a_second_by_default(
    settings: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's bound (design §8: a 503 within a second) is every process's."""
    monkeypatch.delenv("DB_POOL_TIMEOUT_S", raising=False)

    assert settings().db_pool_timeout_s == 1.0


@pytest.mark.parametrize("value", ["0", "-1", "30.5", "soon"])
def test_a_pool_timeout_that_is_no_bound_or_too_long_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", value)

    with pytest.raises(ValidationError, match="db_pool_timeout_s"):
        ServiceSettings()
