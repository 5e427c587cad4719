"""Run one service until SIGTERM or SIGINT: the skeleton of every background process.

    def main() -> None:
        settings = Settings()
        run_service("relay", settings, lambda: bootstrap(settings), metrics_port=9101)

What every process gets from it, in one place:

- logging configured once from the settings;
- ``/healthz``, ``/readyz`` and ``/metrics`` on ``metrics_port``, ready only
  while the service says so and its run is alive (the consumer runtime serves
  its own, so consumers pass no port);
- the first SIGTERM/SIGINT asks the service to drain; a second cancels it,
  which ends the process quietly with 130 (a supervisor in a hurry, not a bug);
- a service that raises, or returns before it was asked to stop, ends the
  process with 1 and the reason in the log: a supervisor can restart a dead
  process, but nothing notices a live one whose work has died.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import NoReturn, Protocol

import uvloop

from shared.logs import configure_logging
from shared.messaging.health import HealthServer
from shared.service.heap import settle_heap
from shared.service.metrics import process_metrics
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

EXIT_STOPPED = 0
EXIT_DIED = 1
#: 128 + SIGINT, what a shell shows for an interrupted command.
EXIT_FORCED = 130
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Service(Protocol):
    """What a process runs: work until ``stop`` is set, then drain and return."""

    def ready(self) -> bool: ...

    def metrics(self) -> bytes: ...

    async def run(self, stop: asyncio.Event) -> None: ...


#: Opens a service's adapters and yields it; closes them on exit (a ``bootstrap``).
OpenService = Callable[[], AbstractAsyncContextManager[Service]]


class ServiceDied(RuntimeError):
    """A service's run ended though nobody asked it to stop."""


async def run_until_stopped(
    work: Awaitable[None], stop: asyncio.Event, *, on_stop: Callable[[], None]
) -> None:
    """Run ``work`` until ``stop`` is set, then call ``on_stop`` and wait for ``work`` to drain.

    If ``work`` ends first, its error (or its return) comes back at once, so
    the caller sees a dead task instead of waiting on ``stop`` forever.
    """
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            on_stop()
        await task
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})


async def serve(
    open_service: OpenService, stop: asyncio.Event, *, metrics_port: int | None
) -> None:
    """Open the service, serve its health, run it until ``stop``, close everything."""
    running: list[Service] = []
    health = None
    if metrics_port is not None:
        health = HealthServer(
            ready=lambda: bool(running) and running[0].ready(),
            metrics=lambda: (running[0].metrics() if running else b"") + process_metrics(),
            port=metrics_port,
        )
        await health.start()
    try:
        async with open_service() as service:
            running.append(service)
            try:
                await service.run(stop)
            finally:
                running.clear()  # /readyz goes red before the adapters close
    finally:
        if health is not None:
            await health.close()
    if not stop.is_set():
        raise ServiceDied("the service stopped though nobody asked it to")


async def supervise(open_service: OpenService, *, metrics_port: int | None = None) -> int:
    """:func:`serve` with the stop signals wired; the exit code says how it ended."""
    stop = asyncio.Event()
    work = asyncio.create_task(serve(open_service, stop, metrics_port=metrics_port))
    forced = False

    def on_signal() -> None:
        nonlocal forced
        if stop.is_set():
            forced = True
            work.cancel()
        else:
            log.info("stopping: draining (a second signal stops at once)")
            stop.set()

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        await work
    except asyncio.CancelledError:
        if not forced:
            raise
        log.warning("stopped by a second signal before the drain finished")
        return EXIT_FORCED
    except Exception:
        log.critical("stopped unexpectedly", exc_info=True)
        return EXIT_DIED
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    return EXIT_STOPPED


def run_service(
    name: str,
    settings: ServiceSettings,
    open_service: OpenService,
    *,
    metrics_port: int | None = None,
) -> NoReturn:
    """The body of a ``python -m`` entry point: log as ``name``, supervise, exit with its code."""
    configure_logging(name, settings.log_level, settings.log_format)
    settle_heap()  # the process's own choice: not in serve(), which tests run in theirs
    raise SystemExit(uvloop.run(supervise(open_service, metrics_port=metrics_port)))
