"""End-to-end fixtures: the system's processes started as a person would start them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink
from tests.support.system import RunningSystem, running_system


@pytest.fixture
async def system(
    system_database: str, fresh_broker: BrokerEnv, mail: SmtpSink
) -> AsyncIterator[RunningSystem]:
    """``make run``'s supervisor on a vhost and database of its own: each test
    counts every mail and push it sees, so nothing another test left may arrive."""
    # each service connects as its own broker user, to this run's vhost
    broker_env = {
        f"{process}__AMQP_URL": fresh_broker.amqp_url(user)
        for process, user in (
            ("API", "calendar"),
            ("RELAY", "calendar"),
            ("REPORTS", "calendar"),
            ("SCHEDULER", "calendar"),
            ("DEADLETTERS", "calendar"),  # reads the DLQs as ops, on this vhost
            ("EMAIL", "email"),
            ("PUSH", "push"),
        )
    }
    # the admin API replays as the publish-only dlq-admin, on this run's vhost too
    broker_env["API__ADMIN_AMQP_URL"] = fresh_broker.amqp_url("dlq-admin")
    async with running_system(system_database, broker_env, mail) as running:
        yield running
