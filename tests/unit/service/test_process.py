"""The process skeleton: how a service's end becomes the process's exit code."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from shared.service.backoff import Backoff
from shared.service.process import (
    EXIT_DIED,
    EXIT_FORCED,
    EXIT_STOPPED,
    Service,
    run_until_stopped,
    supervise,
)


class FakeService:
    """Runs until stopped; ``drain`` is how long it takes to drain, ``fail`` what it raises."""

    def __init__(self, *, drain: float = 0.0, fail: Exception | None = None) -> None:
        self.started = asyncio.Event()
        self.drained = False
        self.closed = False
        self._drain = drain
        self._fail = fail

    def ready(self) -> bool:
        return self.started.is_set()

    def metrics(self) -> bytes:
        return b""

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        if self._fail is not None:
            raise self._fail
        await stop.wait()
        await asyncio.sleep(self._drain)
        self.drained = True


def opener(service: FakeService):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def open_service() -> AsyncIterator[Service]:
        try:
            yield service
        finally:
            service.closed = True

    return open_service


async def signal_when_started(service: FakeService, *signums: signal.Signals) -> None:
    await service.started.wait()
    for signum in signums:
        os.kill(os.getpid(), signum)
        await asyncio.sleep(0.05)


async def test_a_sigterm_drains_the_service_and_exits_0() -> None:
    service = FakeService()
    sender = asyncio.create_task(signal_when_started(service, signal.SIGTERM))

    code = await asyncio.wait_for(supervise(opener(service)), timeout=5)

    await sender
    assert (code, service.drained, service.closed) == (EXIT_STOPPED, True, True)


async def test_a_second_signal_cancels_the_drain_and_exits_130_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = FakeService(drain=60.0)
    sender = asyncio.create_task(signal_when_started(service, signal.SIGTERM, signal.SIGINT))

    code = await asyncio.wait_for(supervise(opener(service)), timeout=5)

    await sender
    assert (code, service.drained, service.closed) == (EXIT_FORCED, False, True)
    assert not any(record.exc_info for record in caplog.records)  # no traceback


async def test_a_service_that_raises_exits_1() -> None:
    service = FakeService(fail=RuntimeError("a bug"))

    code = await asyncio.wait_for(supervise(opener(service)), timeout=5)

    assert (code, service.closed) == (EXIT_DIED, True)


async def test_a_service_that_returns_unasked_exits_1() -> None:
    class Quitter(FakeService):
        async def run(self, stop: asyncio.Event) -> None:
            self.started.set()

    service = Quitter()

    code = await asyncio.wait_for(supervise(opener(service)), timeout=5)

    assert code == EXIT_DIED


async def test_work_that_dies_is_reported_at_once_not_at_the_next_stop() -> None:
    async def dies() -> None:
        raise RuntimeError("relay pass crashed")

    with pytest.raises(RuntimeError, match="relay pass crashed"):
        await asyncio.wait_for(run_until_stopped(dies(), asyncio.Event(), on_stop=lambda: None), 1)


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(first_s=1.0, max_s=5.0)

    delays = [backoff.next_delay() for _ in range(5)]
    backoff.reset()

    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.next_delay() == 1.0
