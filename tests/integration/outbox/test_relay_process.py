"""`python -m calendar_service.relay` as a process: ready while it publishes, stopped by
SIGTERM with exit code 0, and never alive with a dead relay task (exit code 1)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, cast

import asyncpg
import pytest

from calendar_service.config import Settings
from calendar_service.relay import RelayOptions, bootstrap
from shared.service.process import EXIT_DIED, EXIT_STOPPED, supervise
from tests.support.polling import until
from tests.support.ports import free_port
from tests.support.runtime import http_get
from tests.support.services import BrokerEnv, as_role

pytestmark = pytest.mark.integration


class BrokenPool:
    """A pool that fails the way no retry helps: a bug in a pass, not an outage."""

    def acquire(self) -> Any:
        raise RuntimeError("a bug in the relay pass")


def settings_for(database_url: str, broker: BrokerEnv) -> Settings:
    return Settings(
        app_env="test",
        database_url=as_role(database_url, "rsvp_relay"),
        amqp_url=broker.amqp_url("calendar"),
    )


async def test_a_relay_whose_publishing_dies_ends_its_process_with_exit_code_1(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    settings = settings_for(relay_db, fresh_broker)
    broken = cast(asyncpg.Pool, BrokenPool())

    code = await asyncio.wait_for(
        supervise(lambda: bootstrap(settings, pool=broken), metrics_port=free_port()), timeout=30
    )

    assert code == EXIT_DIED


async def test_a_relay_is_ready_while_publishing_and_exits_0_on_sigterm(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    settings, port = settings_for(relay_db, fresh_broker), free_port()
    options = RelayOptions(idle_poll_s=0.5)
    process = asyncio.create_task(
        supervise(lambda: bootstrap(settings, options=options), metrics_port=port)
    )

    async def ready() -> bool:
        try:
            return (await http_get(port, "/readyz"))[0] == 200
        except OSError:
            return False

    await until(ready, timeout=30, what="relay ready")
    os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(process, timeout=15)

    assert code == EXIT_STOPPED
