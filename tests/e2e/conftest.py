"""End-to-end fixtures: the system's processes started as a person would start them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port, free_port_block
from tests.support.services import BrokerEnv

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningSystem:
    """`python -m devtools.run` in a subprocess, pointed at this test run's servers."""

    process: asyncio.subprocess.Process
    api: str
    metrics_base: int
    smtp_port: int
    output: list[str]

    async def stop(self, timeout: float = 30) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        return await asyncio.wait_for(self.process.wait(), timeout=timeout)


async def _collect(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


@pytest.fixture
async def system(database_url: str, broker: BrokerEnv) -> AsyncIterator[RunningSystem]:
    port, smtp_port, metrics_base = free_port(), free_port(), free_port_block(6)
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "SMTP_PORT": str(smtp_port),
        "LOG_FORMAT": "json",
    }
    env.pop("SMTP_HOST", None)
    # the supervisor passes the environment on; each service gets its own broker user
    env["AMQP_URL"] = broker.amqp_url("calendar")
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
    running = RunningSystem(process, f"http://127.0.0.1:{port}", metrics_base, smtp_port, output)
    try:
        async with httpx.AsyncClient(base_url=running.api) as client, asyncio.timeout(30):
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
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
