"""Every refusal a use case can raise has its status in api/errors.py's one table."""

from __future__ import annotations

import pytest

from calendar_service import errors
from calendar_service.api.errors import headers_of, status_of


def _all_errors() -> list[type[errors.CalendarError]]:
    found, todo = [], [errors.CalendarError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == errors.__name__]


@pytest.mark.parametrize("cls", _all_errors()[1:], ids=lambda cls: cls.__name__)
def test_every_calendar_error_has_a_status(cls: type[errors.CalendarError]) -> None:
    exc = cls.__new__(cls)
    assert 400 <= status_of(exc) < 600


def test_a_rate_limit_tells_when_to_retry() -> None:
    refused = errors.RateLimited("resent too often", retry_after_s=7)

    assert status_of(refused) == 429
    assert headers_of(refused) == {"Retry-After": "7"}


def test_statuses_are_those_of_the_http_contract() -> None:
    assert status_of(errors.NothingToCancel()) == 404
    assert status_of(errors.EventFull()) == 409
    assert status_of(errors.IdempotencyKeyReused()) == 422
    assert status_of(errors.LimiterUnavailable()) == 503
    assert headers_of(errors.AccountGone()) == {"WWW-Authenticate": "Bearer"}


def test_a_failed_sign_in_asks_for_bearer_credentials() -> None:
    refused = errors.WrongCredentials()

    assert status_of(refused) == 401
    assert headers_of(refused) == {"WWW-Authenticate": "Bearer"}
    assert str(refused) == "incorrect email or password"


def test_an_overloaded_service_answers_503_and_when_to_retry() -> None:
    busy = errors.Overloaded()

    assert status_of(busy) == 503
    assert headers_of(busy) == {"Retry-After": "1"}
