"""Processes a test starts as an operator would (``python -m …``), and always reaps.

Output goes to a log file rather than a pipe, so a chatty process never
blocks on a full pipe and a failing test can show what the process said.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def python_module(
    module: str, env: Mapping[str, str], log: Path, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m module *args`` with ``env`` added; killed if still running at the end."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=output,
            stderr=output,
            start_new_session=True,  # a Ctrl-C in the test runner is not sent to it
        )
    try:
        yield process
    finally:
        await reap(process)


async def reap(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's group if it is still running, and wait for it."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def wait_ready(
    process: asyncio.subprocess.Process, metrics_port: int, log: Path, timeout: float = 60.0
) -> None:
    """Probe ``/readyz`` as a supervisor would, until it answers 200."""
    url = f"http://127.0.0.1:{metrics_port}/readyz"
    async with httpx.AsyncClient(timeout=1.0) as client, asyncio.timeout(timeout):
        while True:
            if process.returncode is not None:
                said = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"exited with {process.returncode}:\n{said}")
            with suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
