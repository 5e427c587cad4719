"""Where the API reads and whom it believes about client addresses: settings only, no I/O."""

from __future__ import annotations

import pytest

from calendar_service.config import Settings


def test_every_read_goes_to_the_primary_unless_a_replica_is_named() -> None:
    assert Settings().database_read_url is None


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_a_read_replica_url_is_taken_as_operators_write_it(scheme: str) -> None:
    settings = Settings(database_read_url=f"{scheme}://reader@replica:5433/rsvp")

    assert settings.database_read_url == "postgresql+asyncpg://reader@replica:5433/rsvp"


def test_an_empty_read_replica_url_means_none() -> None:
    assert Settings(database_read_url="").database_read_url is None


def test_only_a_local_load_balancer_may_forward_client_addresses_by_default() -> None:
    assert Settings().forwarded_allow_ips == "127.0.0.1"
