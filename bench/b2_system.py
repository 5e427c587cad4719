"""The whole system as `make run` starts it, on ports and servers of the benchmark's own.

The process list is ``devtools.run.plan()`` itself, started with
``devtools.run.start()`` and stopped with ``stop_all()``: when a module is
renamed there, the benchmark follows. The environment points every process
at a throw-away vhost and database and at free ports, so a developer's
`make run` on the default ports keeps running beside it. The mail goes to
``bench.timed_sink`` (one line per mail, in a process of its own), the pushes
to the plan's own ``devtools.pushsink`` recording arrivals in a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from bench.announcement import Sink, create_event, running_mail_sink, seed_users, until_ready
from calendar_service.config import DEV_JWT_SECRET
from calendar_service.security import TokenIssuer
from devtools import run
from tests.support.ports import free_port, free_port_block
from tests.support.services import BrokerEnv

#: Processes of the plan that are development tools, not the system: never measured.
DEVTOOLS_PREFIX = "devtools."
SETUP_CONCURRENCY = 16


@dataclass
class System:
    api: str
    processes: list[run.Process]  #: the plan, started (dev tools included)
    mail: Sink
    push_sink: str
    push_arrivals: Path
    #: every API replica's own address (``api`` is the first)
    api_replicas: list[str] = field(default_factory=list)

    @property
    def measured(self) -> list[run.Process]:
        """The system's own processes: the plan less its development sinks."""
        return [p for p in self.processes if not p.module.startswith(DEVTOOLS_PREFIX)]

    def metrics_urls(self) -> list[str]:
        return [
            f"http://127.0.0.1:{p.env['METRICS_PORT']}/metrics"
            for p in self.processes
            if "METRICS_PORT" in p.env
        ]

    def check_alive(self) -> None:
        for process in self.processes:
            if process.handle is not None and process.handle.returncode is not None:
                raise RuntimeError(f"{process.name} exited with {process.handle.returncode}")


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``devtools.run.start`` passes ``os.environ`` on: set ours for the start only."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@asynccontextmanager
async def running_system(
    database_url: str,
    broker: BrokerEnv,
    workdir: Path,
    *,
    api_replicas: int = 1,
    env_extra: dict[str, str] | None = None,
) -> AsyncIterator[System]:
    """The plan, started; with ``api_replicas`` > 1, more API processes on ports of their own."""
    async with AsyncExitStack() as stack:
        mail = await stack.enter_async_context(running_mail_sink())
        push_port, api_port, metrics_base = free_port(), free_port(), free_port_block(8)

        arrivals = workdir / "push_arrivals.jsonl"
        env = {
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "DATABASE_URL": database_url,
            "AMQP_URL": broker.amqp_url("calendar"),
            "EMAIL__AMQP_URL": broker.amqp_url("email"),
            "PUSH__AMQP_URL": broker.amqp_url("push"),
            "PORT": str(api_port),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(mail.port),
            "PUSH_SINK_PORT": str(push_port),
            "PUSH_SINK_ARRIVALS": str(arrivals),
        }
        env.update(env_extra or {})
        processes = run.plan(metrics_base, smtp_external=True)
        replica_ports = [api_port] + [free_port() for _ in range(api_replicas - 1)]
        api_at = next(n for n, p in enumerate(processes) if p.name == "api")
        for number, port in enumerate(replica_ports[1:], start=2):
            extra = run.Process(f"api{number}", processes[api_at].module, {"PORT": str(port)})
            processes.insert(api_at + number - 1, extra)
        output: list[asyncio.Task[None]] = []

        async def stop_processes() -> None:
            await run.stop_all(processes)
            await asyncio.gather(*output, return_exceptions=True)

        stack.push_async_callback(stop_processes)
        with environment(env):
            for index, process in enumerate(processes):
                await run.start(process, run.COLOURS[index % len(run.COLOURS)], output)
        system = System(
            f"http://127.0.0.1:{api_port}",
            processes,
            mail,
            f"http://127.0.0.1:{push_port}",
            arrivals,
            [f"http://127.0.0.1:{port}" for port in replica_ports],
        )
        ready = [f"{url}/readyz" for url in system.api_replicas] + [f"{system.push_sink}/pushes"]
        ready += [url.removesuffix("/metrics") + "/readyz" for url in system.metrics_urls()]
        for url in ready:
            system.check_alive()
            await until_ready(url, within_s=60)
        yield system


@dataclass(frozen=True)
class Attendee:
    user: str  #: the e-mail address: what the SMTP sink sees
    token: str
    event_id: str
    subscription_id: str  #: the push sink's name for this attendee's browser

    def as_json(self) -> dict[str, str]:
        return {"user": self.user, "token": self.token, "event_id": self.event_id}


async def subscribe(client: httpx.AsyncClient, system: System, token: str) -> str:
    """A push subscription held by the push sink, registered for the user with the API."""
    made = await client.post(f"{system.push_sink}/subscriptions")
    made.raise_for_status()
    subscription = made.json()
    registered = await client.post(
        f"{system.api}/users/me/push-subscriptions",
        json={"endpoint": subscription["endpoint"], "keys": subscription["keys"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    registered.raise_for_status()
    return str(subscription["id"])


async def prepare_attendees(system: System, dsn: str, count: int, events: int) -> list[Attendee]:
    """``count`` new users, each with a token and a push subscription, over ``events`` events."""
    issuer = TokenIssuer(DEV_JWT_SECRET, timedelta(hours=3))
    async with httpx.AsyncClient(base_url=system.api, timeout=60) as client:
        [(organizer_id, _)] = await seed_users(dsn, "organizer", 1)
        organizer = {"Authorization": f"Bearer {issuer.issue(organizer_id, 'user')}"}
        event_ids = [
            await create_event(client, organizer, f"Bench night {n}") for n in range(events)
        ]
        users = await seed_users(dsn, "attendee", count)
        tokens = [issuer.issue(user_id, "user") for user_id, _ in users]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(token: str) -> str:
            async with gate:
                return await subscribe(client, system, token)

        subscriptions = await asyncio.gather(*(one(token) for token in tokens))
    return [
        Attendee(address, token, event_ids[n % events], subscription)
        for n, ((_, address), token, subscription) in enumerate(
            zip(users, tokens, subscriptions, strict=True)
        )
    ]


def new_workdir(root: Path) -> Path:
    path = root / f"b2-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path
