"""The whole system as ``make run`` starts it (``python -m devtools.run``), in a subprocess.

Pointed at the test's own database, SMTP sink and broker (a vhost of the
shared broker, or a cluster), with the suite's roomy limits; stopped with
Ctrl-C as a person would, and killed if it does not stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.api import SUITE_LIMITS
from tests.support.ports import free_port, free_port_block
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


@asynccontextmanager
async def running_system(
    database_url: str, broker_env: Mapping[str, str], mail: SmtpSink
) -> AsyncIterator[RunningSystem]:
    """Every process, ready; ``broker_env`` holds the ``AMQP_URL`` variables
    (``EMAIL__AMQP_URL``… for one process alone, see ``devtools.run``)."""
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
    env.pop("AMQP_URL", None)
    env.update(broker_env)
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
