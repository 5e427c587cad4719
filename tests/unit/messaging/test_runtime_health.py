"""The health server's answers: liveness, readiness that follows the runtime, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.messaging.health import HealthServer
from tests.support.runtime import http_get


class Readiness:
    def __init__(self) -> None:
        self.ready = False


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
async def server(readiness: Readiness) -> AsyncIterator[HealthServer]:
    server = HealthServer(
        ready=lambda: readiness.ready, metrics=lambda: b"up 1\n", port=0, host="127.0.0.1"
    )
    await server.start()
    yield server
    await server.close()


async def test_healthz_answers_while_the_process_lives(server: HealthServer) -> None:
    assert await http_get(server.port, "/healthz") == (200, b"ok\n")


async def test_readyz_follows_readiness(server: HealthServer, readiness: Readiness) -> None:
    before = await http_get(server.port, "/readyz")
    readiness.ready = True
    after = await http_get(server.port, "/readyz")

    assert (before[0], after[0]) == (503, 200)


async def test_metrics_are_served(server: HealthServer) -> None:
    assert await http_get(server.port, "/metrics") == (200, b"up 1\n")


async def test_unknown_paths_are_not_found(server: HealthServer) -> None:
    assert (await http_get(server.port, "/nope"))[0] == 404
