"""The whole pipeline as separate processes, with a handle on every server it talks to.

    async with running_system(env_settings) as system:
        ...                             # drive RSVPs through system.api
        await system.database.cut()     # PostgreSQL "stopped": refused and reset
        await system.broker_link.cut()  # RabbitMQ "stopped" for these processes
        await system.redis.stop()       # a private redis-server, killed
        system.mail.stop()              # the SMTP server down
        await system.kill("email")      # SIGKILL, then system.start("email")

Processes (``python -m …`` as an operator starts them): the API, the outbox
relay, the delivery-report consumer, the email and the push consumer, and
the dead-letter archiver, each as its broker user and its PostgreSQL role
(as ``make run`` starts them). Each
reaches PostgreSQL and RabbitMQ through a loopback TCP proxy of this run
(:class:`~tests.support.proxy.CuttableProxy`), so a fault test can take a
server away from them without touching the shared servers: the shared
PostgreSQL and RabbitMQ are never stopped, and only this run's database and
vhost are used. Redis is a private ``redis-server`` that may be killed. The
SMTP server (aiosmtpd) and the Web Push service run in the test's process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from calendar_service.config import with_credentials
from devtools.env import EnvSettings
from devtools.pushsink import PushSink
from tests.support.api import SUITE_LIMITS
from tests.support.ports import free_port
from tests.support.processes import reap, wait_ready
from tests.support.proxy import CuttableProxy, proxied
from tests.support.push_service import running_push_service
from tests.support.redis_server import PrivateRedis
from tests.support.services import BrokerEnv, as_role, own_database, own_vhost
from tests.support.smtp import ReceivedMail, SmtpSink

ROOT = Path(__file__).resolve().parents[2]
#: Six processes starting at once on a loaded two-core machine.
READY_TIMEOUT_S = 60.0

#: name -> (module, broker user, PostgreSQL role), as ``make run`` starts them
#: (``devtools/run.py``; README "Broker users" and "Database roles"). The
#: archiver reads the DLQs as ``ops``, the user of its ``RABBITMQ_MANAGEMENT_URL``.
PROCESSES: dict[str, tuple[str, str, str]] = {
    "api": ("calendar_service", "calendar", "rsvp_api"),
    "relay": ("calendar_service.relay", "calendar", "rsvp_relay"),
    "reports": ("calendar_service.delivery_reports", "calendar", "rsvp_reports"),
    "email": ("email_consumer", "email", "rsvp_email"),
    "push": ("push_consumer", "push", "rsvp_push"),
    "deadletters": ("calendar_service.deadletters", "ops", "rsvp_archiver"),
}


@dataclass
class RunningSystem:
    database_url: str  #: the test database itself, not through the proxy
    broker: BrokerEnv  #: the vhost itself, not through the proxy
    database: CuttableProxy  #: between every process and PostgreSQL
    broker_link: CuttableProxy  #: between every process and RabbitMQ
    redis: PrivateRedis
    mail: SmtpSink
    push: PushSink
    api: str
    logs: Path
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    #: message id -> when its (first) email arrived, time.monotonic()
    email_arrivals: dict[uuid.UUID, float] = field(default_factory=dict)
    _email_ids: list[uuid.UUID] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mail.after_data = self._arrived

    def _arrived(self, mail: ReceivedMail) -> None:  # in the SMTP server's thread
        self.email_arrivals.setdefault(_message_of(mail), time.monotonic())

    def emails(self) -> list[uuid.UUID]:
        """The message id of every email that arrived, as often as it arrived."""
        received = self.mail.received  # only ever grows: parse the new ones alone
        self._email_ids.extend(_message_of(mail) for mail in received[len(self._email_ids) :])
        return list(self._email_ids)

    def pushes(self) -> list[uuid.UUID]:
        """The message id of every push that arrived (its Topic), as often as it arrived."""
        return [uuid.UUID(push.topic) for push in self.push.received if push.topic]

    def push_arrivals(self, message: uuid.UUID) -> float | None:
        return next((p.received_at for p in self.push.received if p.topic == message.hex), None)

    async def start(self, name: str) -> None:
        """Start ``name`` (again) and wait until it says it is ready."""
        module, _, _ = PROCESSES[name]
        log = self.logs / f"{name}.log"
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                cwd=ROOT,
                env={**os.environ, **self.envs[name]},
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        self.processes[name] = process
        if name == "api":
            await _wait_api(process, self.api, log)
        else:
            await wait_ready(process, self.ports[name], log, timeout=READY_TIMEOUT_S)

    async def kill(self, name: str) -> None:
        """SIGKILL ``name``: no drain, no goodbye to any server."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def assert_all_running(self) -> None:
        for name, process in self.processes.items():
            assert process.returncode is None, f"{name} exited:\n{self.log_of(name)[-4000:]}"


async def _wait_api(process: asyncio.subprocess.Process, api: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if process.returncode is not None:
                said = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError(f"the API exited:\n{said}")
            try:
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the API did not become ready")
            await asyncio.sleep(0.1)


def _message_of(mail: ReceivedMail) -> uuid.UUID:
    """The message id the email consumer put in the ``Message-ID`` (``<id@domain>``)."""
    return uuid.UUID(str(mail.message["Message-ID"]).strip("<>").split("@", 1)[0])


def _environments(system: RunningSystem, database_url: str) -> None:
    common = {
        "APP_ENV": "test",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "console",
        "REDIS_URL": system.redis.url,
        "SMTP_HOST": system.mail.host,
        "SMTP_PORT": str(system.mail.port),
        "SMTP_TIMEOUT_S": "5",
        **{name.upper(): limit for name, limit in SUITE_LIMITS.items()},
    }
    link = system.broker_link.port
    for name, (_, user, role) in PROCESSES.items():
        amqp = f"amqp://{user}:{user}@127.0.0.1:{link}/{quote(system.broker.vhost, safe='')}"
        env = {**common, "AMQP_URL": amqp, "DATABASE_URL": as_role(database_url, role)}
        if name == "deadletters":
            # only its user and password are read: the DLQs on AMQP_URL's broker as ``ops``
            env["RABBITMQ_MANAGEMENT_URL"] = with_credentials(system.broker.admin_url, user, user)
        if name == "api":
            port = int(system.api.rsplit(":", 1)[1])
            env |= {"PORT": str(port), "HOST": "127.0.0.1"}
        else:
            system.ports[name] = free_port()
            env["METRICS_PORT"] = str(system.ports[name])
        system.envs[name] = env


@asynccontextmanager
async def running_system(env: EnvSettings) -> AsyncIterator[RunningSystem]:
    """Every process of the pipeline on a database, vhost and Redis of this run."""
    async with AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(own_database(env))
        broker = await stack.enter_async_context(own_vhost(env))
        database, proxied_database = await stack.enter_async_context(proxied(database_url))
        broker_link, _ = await stack.enter_async_context(
            proxied(f"amqp://{broker.host}:{broker.port}")
        )
        redis = PrivateRedis()
        stack.push_async_callback(redis.close)
        await redis.start()
        mail = SmtpSink().start()
        stack.callback(mail.stop)
        push = await stack.enter_async_context(running_push_service())
        system = RunningSystem(
            database_url=database_url,
            broker=broker,
            database=database,
            broker_link=broker_link,
            redis=redis,
            mail=mail,
            push=push,
            api=f"http://127.0.0.1:{free_port()}",
            logs=Path(tempfile.mkdtemp(prefix="faults-")),
        )
        _environments(system, proxied_database)
        stack.push_async_callback(_stop_all, system)
        await asyncio.gather(*(system.start(name) for name in PROCESSES))
        yield system


async def _stop_all(system: RunningSystem) -> None:
    """SIGTERM each (a drain), SIGKILL what is still running after 15 s."""
    for process in system.processes.values():
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(15):
            for process in system.processes.values():
                await process.wait()
    except TimeoutError:
        pass
    for process in system.processes.values():
        await reap(process)
