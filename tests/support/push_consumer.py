"""The push consumer as ``python -m push_consumer`` wires it, run inside a test.

``running_push_consumer(settings)`` builds the runtime with the same
``bootstrap`` that ``python -m push_consumer`` runs, but runs it in the
background of the test's event loop instead of until SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from push_consumer.bootstrap import bootstrap
from push_consumer.config import Settings
from shared.messaging.runtime import ConsumerRuntime
from tests.support.runtime import running
from tests.support.services import BrokerEnv, as_role


def push_settings(broker: BrokerEnv, database_url: str, **overrides: Any) -> Settings:
    """The consumer's settings for this test's vhost and database (a throw-away VAPID key)."""
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": as_role(database_url, "rsvp_push"),
        "amqp_url": broker.amqp_url("push"),
        "metrics_port": None,
        "push_timeout_s": 5.0,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running_push_consumer(settings: Settings) -> AsyncIterator[ConsumerRuntime]:
    """``python -m push_consumer`` with ``settings`` until the block ends, then a graceful stop."""
    async with bootstrap(settings) as consumer, running(consumer.runtime):
        yield consumer.runtime
