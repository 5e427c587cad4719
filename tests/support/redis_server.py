"""A private redis-server on a port of its own, that a fault test may stop and start.

The suite's Redis is shared with everything else on the machine and is never
stopped; this one holds nothing but what the processes under test put in it
(no persistence, loopback only).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from tests.support.ports import free_port


class PrivateRedis:
    """``redis-server`` on 127.0.0.1 and a free port, kept across stop and start."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._binary = binary
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="private-redis-"))
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it and wait until it answers PING (within 10 s)."""
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(10):
            while not await self._answers():
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Kill it (as a crash would) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()
