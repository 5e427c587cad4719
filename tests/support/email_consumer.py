"""The email consumer as ``python -m email_consumer`` wires it, run inside a test.

``running_email_consumer(settings)`` builds the runtime with the same
``bootstrap`` that ``python -m email_consumer`` runs, but runs it in the
background of the test's event loop instead of until SIGTERM; ``email_env``
turns the same settings into the environment of a real process, and
``email_consumer_process(settings)`` runs the real command in a process of
its own, for tests that kill it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from email_consumer.bootstrap import bootstrap
from email_consumer.config import Settings
from shared.messaging.runtime import ConsumerRuntime
from tests.support.amqp import publish_as_calendar
from tests.support.processes import python_module
from tests.support.runtime import running
from tests.support.services import BrokerEnv, as_role
from tests.support.smtp import SmtpSink


def email_settings(
    broker: BrokerEnv, database_url: str, sink: SmtpSink, **overrides: Any
) -> Settings:
    """The consumer's settings for this test's vhost, database and SMTP sink."""
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": as_role(database_url, "rsvp_email"),
        "amqp_url": broker.amqp_url("email"),
        "smtp_host": sink.host,
        "smtp_port": sink.port,
        "metrics_port": None,
        **overrides,
    }
    return Settings(**values)


def email_env(settings: Settings) -> dict[str, str]:
    """The environment that gives ``python -m email_consumer`` exactly ``settings``."""
    return {
        name.upper(): str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }


@asynccontextmanager
async def running_email_consumer(settings: Settings) -> AsyncIterator[ConsumerRuntime]:
    """``python -m email_consumer`` with ``settings`` until the block ends, then a graceful stop."""
    async with bootstrap(settings) as consumer, running(consumer.runtime):
        yield consumer.runtime


@asynccontextmanager
async def email_consumer_process(
    settings: Settings, *, metrics_port: int = 0, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m email_consumer`` as a process of its own, ``settings`` in its environment.

    Killed outright (SIGKILL) if it is still running when the block ends; a
    test may kill it earlier to see what a crash leaves behind. The metrics
    port defaults to a free one, never the default a running system uses.
    Its output goes to ``log`` (a temporary file unless given).
    """
    if log is None:
        handle, name = tempfile.mkstemp(prefix="email_consumer-", suffix=".log")
        os.close(handle)
        log = Path(name)
    env = {**email_env(settings), "METRICS_PORT": str(metrics_port)}
    async with python_module("email_consumer", env, log) as process:
        yield process


__all__ = [
    "email_consumer_process",
    "email_env",
    "email_settings",
    "publish_as_calendar",
    "running_email_consumer",
]
