"""End-to-end fixtures: the system's processes started as a person would start them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devtools.env import EnvSettings
from tests.support.api import SUITE_LIMITS
from tests.support.ports import free_port, free_port_block
from tests.support.services import BrokerEnv, own_database
from tests.support.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
#: How long the system may take to start: six processes at once on a loaded 2-core machine.
READY_TIMEOUT_S = 60


@dataclass
class RunningSystem:
    """`python -m devtools.run` in a subprocess, pointed at this test run's servers."""

    process: asyncio.subprocess.Process
    api: str
    metrics_base: int
    mail: SmtpSink
    push_sink: str  #: base URL of the dev push service `make run` started
    output: list[str]

    async def stop(self, timeout: float = 30) -> int:
        if self.process.returncode is None:
            # as a terminal's Ctrl-C does: to the runner's whole process group
            os.killpg(self.process.pid, signal.SIGINT)
        return await asyncio.wait_for(self.process.wait(), timeout=timeout)


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


@pytest.fixture
def mail() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def system_database(env_settings: EnvSettings) -> AsyncIterator[str]:
    """A database of its own: rows other tests left in the outbox must not reach this sink."""
    async with own_database(env_settings) as url:
        yield url


@pytest.fixture
async def system(
    system_database: str, fresh_broker: BrokerEnv, mail: SmtpSink
) -> AsyncIterator[RunningSystem]:
    """``make run``'s supervisor on a vhost and database of its own: each test
    counts every mail and push it sees, so nothing another test left may arrive."""
    database_url, broker = system_database, fresh_broker
    port, push_sink_port, metrics_base = free_port(), free_port(), free_port_block(7)
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "SMTP_HOST": mail.host,  # so the supervisor starts no dev sink of its own
        "SMTP_PORT": str(mail.port),
        "PUSH_SINK_PORT": str(push_sink_port),
        "LOG_FORMAT": "json",
        # the limit counters live in the shared Redis: runs from 127.0.0.1 add up
        **{name.upper(): limit for name, limit in SUITE_LIMITS.items()},
    }
    # each service connects as its own broker user, to this run's vhost
    env.pop("AMQP_URL", None)
    for process, user in (
        ("API", "calendar"),
        ("RELAY", "calendar"),
        ("REPORTS", "calendar"),
        ("EMAIL", "email"),
        ("PUSH", "push"),
        ("SCHEDULER", "calendar"),
        ("DEADLETTERS", "calendar"),
    ):
        env[f"{process}__AMQP_URL"] = broker.amqp_url(user)
    # the archiver reads the DLQs as the API's dead-letter actions do
    for process in ("API", "DEADLETTERS"):
        env[f"{process}__ADMIN_AMQP_URL"] = broker.amqp_url("ops")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devtools.run",
        "--metrics-base",
        str(metrics_base),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the test runner is not sent to it
    )
    output: list[str] = []
    assert process.stdout is not None
    reader = asyncio.create_task(_collect(process.stdout, output))
    running = RunningSystem(
        process,
        f"http://127.0.0.1:{port}",
        metrics_base,
        mail,
        f"http://127.0.0.1:{push_sink_port}",
        output,
    )
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(READY_TIMEOUT_S):
            for ready in (f"{running.api}/readyz", f"{running.push_sink}/pushes"):
                while True:
                    try:
                        if (await client.get(ready)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.returncode is not None:
                        raise AssertionError("the system exited:\n" + "".join(output))
                    await asyncio.sleep(0.2)
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
        await reader
