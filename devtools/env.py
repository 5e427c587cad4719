"""Check and prepare the local services that `make run` and `make test` need.

    python -m devtools.env check      # reachable? broker plugins on?
    python -m devtools.env broker     # load broker/definitions.json
    python -m devtools.env database   # create the database if missing
    python -m devtools.env migrate    # create it if missing, then apply migrations
    python -m devtools.env browser    # Debian's chromium for the admin page's browser test
    python -m devtools.env wrk        # Debian's wrk for benchmark B1
    python -m devtools.env nginx      # Debian's nginx for the load-balancer test

Each missing service is reported on one line saying how to start it; the
RabbitMQ plugins are enabled here when the broker runs on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.management import ManagementClient, ManagementError
from shared.messaging.definitions import DEFINITIONS_PATH
from shared.settings import split_url_list

REQUIRED_PLUGINS = (
    "rabbitmq_management",
    "rabbitmq_shovel",
    "rabbitmq_shovel_management",
    "rabbitmq_prometheus",
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class EnvSettings(BaseSettings):
    """Where the services are; the same names the services read (design §7)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/rsvp"
    amqp_url: str = "amqp://calendar:calendar@127.0.0.1:5672/rsvp"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: An administrator account, for loading definitions and test vhosts.
    rabbitmq_admin_url: str = Field(default="http://guest:guest@127.0.0.1:15672")
    #: The broker's prometheus plugin, which the dashboard's queue panels read.
    rabbitmq_prometheus_url: str = "http://127.0.0.1:15692"


@dataclass
class Missing:
    service: str
    detail: str
    how: str

    def line(self) -> str:
        return f"✗ {self.service}: {self.detail}. Start it: {self.how}"


def _postgres_dsn(url: str, database: str | None = None) -> str:
    parts = urlsplit(url.replace("+asyncpg", ""))
    path = f"/{database}" if database is not None else parts.path
    return parts._replace(path=path).geturl()


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "rsvp"


async def _check_postgres(settings: EnvSettings) -> Missing | None:
    try:
        conn = await asyncpg.connect(_postgres_dsn(settings.database_url, "postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return Missing(
            "PostgreSQL",
            f"unreachable at {urlsplit(settings.database_url).netloc} ({exc.__class__.__name__})",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            "   (or: docker compose up -d postgres)",
        )
    await conn.close()
    return None


async def _check_redis(settings: EnvSettings) -> Missing | None:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as exc:
        return Missing(
            "Redis",
            f"unreachable at {urlsplit(settings.redis_url).netloc} ({exc.__class__.__name__})",
            'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
            "--appendonly no   (or: docker compose up -d redis)",
        )
    finally:
        await client.aclose()
    return None


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


async def _management_plugins(url: str) -> set[str] | None:
    try:
        async with ManagementClient(url, timeout=5) as client:
            return await client.enabled_plugins()
    except ManagementError:
        return None


async def _check_rabbitmq(settings: EnvSettings) -> Missing | None:
    amqp = urlsplit(split_url_list(settings.amqp_url)[0])
    host, port = amqp.hostname or "127.0.0.1", amqp.port or 5672
    if not _port_open(host, port):
        return Missing(
            "RabbitMQ",
            f"nothing listens on {host}:{port}",
            "rabbitmq-server -detached   (or: docker compose up -d rabbitmq)",
        )
    plugins = await _management_plugins(settings.rabbitmq_admin_url)
    missing = [p for p in REQUIRED_PLUGINS if plugins is None or p not in plugins]
    if not missing:
        return None
    if host in LOOPBACK and shutil.which("rabbitmq-plugins"):
        print(f"enabling RabbitMQ plugins: {' '.join(missing)}")
        # a fixed argv for the local broker's own admin tool, run once at set-up
        enable = ["rabbitmq-plugins", "enable", *missing]
        await asyncio.to_thread(subprocess.run, enable, check=False, capture_output=True)
        for _ in range(60):
            plugins = await _management_plugins(settings.rabbitmq_admin_url)
            if plugins is not None and all(p in plugins for p in REQUIRED_PLUGINS):
                return None
            await asyncio.sleep(0.5)
    return Missing(
        "RabbitMQ management",
        f"plugins not enabled or API not answering at "
        f"{urlsplit(settings.rabbitmq_admin_url).hostname}:"
        f"{urlsplit(settings.rabbitmq_admin_url).port} (missing: {', '.join(missing)})",
        f"rabbitmq-plugins enable {' '.join(REQUIRED_PLUGINS)}",
    )


async def check(settings: EnvSettings) -> int:
    results = await asyncio.gather(
        _check_postgres(settings), _check_redis(settings), _check_rabbitmq(settings)
    )
    missing = [m for m in results if m is not None]
    for item in missing:
        print(item.line(), file=sys.stderr)
    if missing:
        print("Some services are not running; start them as shown and try again.", file=sys.stderr)
        return 1
    print("✓ PostgreSQL, Redis and RabbitMQ (with management, shovel, prometheus) are up")
    return 0


async def load_broker_definitions(settings: EnvSettings) -> int:
    definitions = json.loads(DEFINITIONS_PATH.read_text())
    async with ManagementClient(settings.rabbitmq_admin_url) as client:
        await client.import_definitions(definitions)
    vhosts = ", ".join(v["name"] for v in definitions["vhosts"])
    print(f"✓ broker definitions loaded (vhost {vhosts})")
    return 0


async def ensure_database(settings: EnvSettings) -> int:
    name = _database_name(settings.database_url)
    conn = await asyncpg.connect(_postgres_dsn(settings.database_url, "postgres"))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"✓ database {name} created")
        else:
            print(f"✓ database {name} exists")
    finally:
        await conn.close()
    return 0


async def migrate(settings: EnvSettings) -> int:
    from calendar_service.migrate import upgrade_async

    await ensure_database(settings)
    await upgrade_async(settings.database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    print("✓ database schema is up to date")
    return 0


CHROMIUM = "/usr/bin/chromium"
WRK = "wrk"
PROMETHEUS = "prometheus"
PROCESS_EXPORTER = "prometheus-process-exporter"
NGINX = "/usr/sbin/nginx"


async def apt_install(package: str, program: str, why: str) -> int:
    """Debian's ``package`` unless ``program`` is on PATH: apt-get when root, else say how."""
    if shutil.which(program):
        return 0
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} (apt-get) for {why}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # fixed argv: refresh the package lists once, then install
        await asyncio.to_thread(subprocess.run, ["apt-get", "update", "-qq"], check=False, env=env)
        done = await asyncio.to_thread(subprocess.run, install, check=False, env=env)
        if done.returncode == 0 and shutil.which(program):
            print(f"✓ {package} installed")
            return 0
    print(f"✗ {program} missing. Install it: sudo {' '.join(install)}", file=sys.stderr)
    return 1


async def ensure_browser(settings: EnvSettings) -> int:
    """Debian's chromium, which the admin page test drives with playwright.

    Installed with apt-get when we are root; otherwise the one command to run
    is printed. Playwright never downloads a browser of its own here.
    """
    return await apt_install("chromium", CHROMIUM, "the admin page test")


async def ensure_wrk(settings: EnvSettings) -> int:
    """Debian's wrk, the closed-loop HTTP load generator of benchmark B1 (`make bench`)."""
    return await apt_install("wrk", WRK, "benchmark B1")


async def ensure_process_exporter(settings: EnvSettings) -> int:
    """Debian's prometheus-process-exporter: the CPU of PostgreSQL and Redis, which export
    none of their own, for the dashboard (its test, and `make dashboard-snapshot`)."""
    return await apt_install(PROCESS_EXPORTER, PROCESS_EXPORTER, "the dashboard's CPU panel")


async def ensure_prometheus(settings: EnvSettings) -> int:
    """Debian's prometheus and process-exporter, which `make dashboard-snapshot` runs."""
    if await ensure_process_exporter(settings):
        return 1
    return await apt_install(PROMETHEUS, PROMETHEUS, "make dashboard-snapshot")


async def ensure_nginx(settings: EnvSettings) -> int:
    """Debian's nginx, which the load-balancer test runs in front of two API replicas.

    Only the binary is used: the test starts it with the repository's
    ``deploy/nginx/nginx.conf`` in a directory of its own, never the system's
    service.
    """
    return await apt_install("nginx", NGINX, "the load-balancer test")


COMMANDS = {
    "check": check,
    "broker": load_broker_definitions,
    "database": ensure_database,
    "migrate": migrate,
    "browser": ensure_browser,
    "wrk": ensure_wrk,
    "process-exporter": ensure_process_exporter,
    "prometheus": ensure_prometheus,
    "nginx": ensure_nginx,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        print(f"usage: python -m devtools.env {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    return asyncio.run(COMMANDS[args[0]](EnvSettings()))


if __name__ == "__main__":
    raise SystemExit(main())
