"""Two API replicas (``python -m calendar_service``) on loopback ports, as an operator runs them."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.api import SUITE_LIMITS
from tests.support.ports import free_port
from tests.support.processes import python_module, wait_ready


@dataclass
class Replica:
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def address(self) -> str:
        """As nginx names it in ``$upstream_addr``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def replica_env(database_url: str, amqp_url: str, **overrides: str) -> dict[str, str]:
    """What an operator sets for the API: the suite's roomy limits unless overridden."""
    env = {name.upper(): value for name, value in SUITE_LIMITS.items()}
    env |= {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "HOST": "127.0.0.1",
        "DB_POOL_SIZE": "5",
        "LOG_FORMAT": "json",
        # nginx reaches the replicas from loopback; no other peer is believed
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    return env | overrides


@asynccontextmanager
async def api_replicas(
    count: int, env: Mapping[str, str], directory: Path
) -> AsyncIterator[list[Replica]]:
    """``count`` API processes started together; each killed at the end if still running."""
    async with AsyncExitStack() as stack:
        replicas = []
        for index in range(count):
            port = free_port()
            log = directory / f"api-{index + 1}.log"
            process = await stack.enter_async_context(
                python_module("calendar_service", {**env, "PORT": str(port)}, log)
            )
            replicas.append(Replica(port=port, process=process, log=log))
        await asyncio.gather(*(wait_ready(r.process, r.port, r.log) for r in replicas))
        yield replicas


def random_loopback_address() -> str:
    """A client address of this run's own in 127.0.0.0/8 (not 127.0.0.1, nginx's own).

    Per-IP counters live in the shared Redis; a fresh address starts them at zero.
    """
    return f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    """An HTTP client whose connections leave from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=15.0)


@asynccontextmanager
async def scratch_directory(prefix: str) -> AsyncIterator[Path]:
    """A directory under /tmp that other local users (nginx, postgres) may enter."""
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix))
    await asyncio.to_thread(path.chmod, 0o755)
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
