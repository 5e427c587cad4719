"""A PostgreSQL primary and its streaming replica, private to a test, from Debian's tools.

Why not a replica of the shared server at 127.0.0.1:5432: its pg_hba.conf
has no ``replication`` entry (``all`` does not cover replication
connections), so ``pg_basebackup`` from it is refused, and adding one means
editing and reloading a server other runs share. A base backup would also
copy every database on it. So the test makes a small primary of its own
(``initdb``, whose pg_hba allows replication from loopback) on a free port,
clones it with ``pg_basebackup -R`` and starts the clone as a hot standby on
another port. Both run as the ``postgres`` user when the test runs as root
(the server refuses root), in a scratch directory, and are stopped with
``pg_ctl -m immediate`` at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.ports import free_port

DEBIAN_POSTGRES = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The newest installed major version's binaries (initdb, pg_ctl, pg_basebackup)."""
    versions = sorted(
        (p for p in DEBIAN_POSTGRES.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name),
    )
    assert versions, f"no PostgreSQL server binaries under {DEBIAN_POSTGRES}"
    return versions[-1]


@dataclass(frozen=True)
class StreamingPair:
    primary_port: int
    replica_port: int

    def dsn(self, port: int, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"


def _as_server_user() -> dict[str, Any]:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


async def _run(*argv: str | Path, log: Path) -> None:
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *map(str, argv), stdout=output, stderr=output, **_as_server_user()
        )
        code = await process.wait()
    if code != 0:
        said = await asyncio.to_thread(log.read_text)
        raise AssertionError(f"{argv[0]} exited with {code}:\n{said}")


def _server_options(port: int, sockets: Path) -> str:
    # durability is not what this test is about: fsync off keeps it quick
    return f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"


@asynccontextmanager
async def streaming_pair(directory: Path) -> AsyncIterator[StreamingPair]:
    """A primary and a hot standby streaming from it, both on loopback."""
    binaries, log = postgres_bin(), directory / "postgres.log"
    primary, replica, sockets = directory / "primary", directory / "replica", directory / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for path in (directory, sockets):
            shutil.chown(path, "postgres", "postgres")
    pair = StreamingPair(primary_port=free_port(), replica_port=free_port())
    started: list[Path] = []
    try:
        await _run(
            binaries / "initdb", "-D", primary, "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8", log=log,
        )  # fmt: skip
        await _pg_ctl_start(binaries, primary, _server_options(pair.primary_port, sockets), log)
        started.append(primary)
        await _run(
            binaries / "pg_basebackup", "-h", "127.0.0.1", "-p", str(pair.primary_port),
            "-U", "postgres", "-D", replica, "-R", "-X", "stream", "--checkpoint=fast",
            "--no-sync", log=log,
        )  # fmt: skip
        await _pg_ctl_start(binaries, replica, _server_options(pair.replica_port, sockets), log)
        started.append(replica)
        await _wait_streaming(pair)
        yield pair
    finally:
        for data in reversed(started):
            with suppress(AssertionError):
                await _run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "stop", log=log)


async def _pg_ctl_start(binaries: Path, data: Path, options: str, log: Path) -> None:
    server_log = data.parent / f"{data.name}.log"
    await _run(
        binaries / "pg_ctl", "-D", data, "-o", options, "-l", server_log, "-w", "start", log=log
    )


async def _wait_streaming(pair: StreamingPair, timeout: float = 30.0) -> None:
    primary = await asyncpg.connect(pair.dsn(pair.primary_port))
    try:
        async with asyncio.timeout(timeout):
            while not await primary.fetchval(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ):
                await asyncio.sleep(0.05)
    finally:
        await primary.close()
