"""Every series the Grafana dashboard queries is exported by some process of the system.

The system runs as `make run` starts it; after one RSVP has gone through, the
test reads the exposition of the API, each background process, RabbitMQ's
prometheus plugin (node and per-queue families, as deploy/prometheus/prometheus.yml
scrapes them) and Debian's process-exporter with the repo's config, and checks
the dashboard JSON against what they offer. A panel whose metric was renamed or
never exported fails here instead of staying empty in Grafana.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devtools.dashboard import exported_names, load, queried_metrics
from devtools.env import PROCESS_EXPORTER, EnvSettings
from tests.e2e.conftest import RunningSystem
from tests.support.api import create_event, register
from tests.support.ports import free_port
from tests.support.services import BrokerEnv

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
#: devtools.run's metrics ports, from its base: relay, reports, email, push, scheduler, archiver
PROCESS_OFFSETS = range(1, 7)


@pytest.fixture
async def process_exporter() -> AsyncIterator[str]:
    """Debian's process-exporter with the repo's process groups (`make test` installs it)."""
    binary = shutil.which(PROCESS_EXPORTER)
    assert binary, f"{PROCESS_EXPORTER} is missing: `make monitoring` installs it"
    port = free_port()
    exporter = await asyncio.create_subprocess_exec(
        binary,
        "-config.path",
        str(ROOT / "deploy" / "prometheus" / "process-exporter.yml"),
        "-web.listen-address",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(20):
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
        yield url
    finally:
        exporter.terminate()
        await exporter.wait()


async def _exposition(client: httpx.AsyncClient, url: str, **params: str | list[str]) -> str:
    answer = await client.get(url, params=params)
    assert answer.status_code == 200, url
    return answer.text


async def test_every_metric_the_dashboard_queries_is_exported(
    system: RunningSystem,
    fresh_broker: BrokerEnv,
    env_settings: EnvSettings,
    process_exporter: str,
) -> None:
    async with httpx.AsyncClient(base_url=system.api, timeout=10) as client:
        organizer, guest = await register(client), await register(client, name="Grace")
        event = await create_event(client, organizer, title="Metrics night")
        await client.get(f"/events/{event['id']}")  # a cache miss, then a hit
        await client.get(f"/events/{event['id']}")
        answered = await client.post(
            f"/events/{event['id']}/rsvps", json={"status": "going"}, headers=guest["headers"]
        )
        assert answered.status_code == 201
        await system.mail.wait_for(1, timeout=40)

        expositions = [await _exposition(client, f"{system.api}/metrics")]
        for offset in PROCESS_OFFSETS:
            url = f"http://127.0.0.1:{system.metrics_base + offset}/metrics"
            expositions.append(await _exposition(client, url))
        prometheus_plugin = env_settings.rabbitmq_prometheus_url
        expositions.append(await _exposition(client, f"{prometheus_plugin}/metrics"))
        expositions.append(
            await _exposition(
                client,
                f"{prometheus_plugin}/metrics/detailed",
                vhost=fresh_broker.vhost,
                family=["queue_coarse_metrics", "queue_consumer_count", "channel_queue_metrics"],
            )
        )
        expositions.append(await _exposition(client, process_exporter))

    exported = set().union(*(exported_names(text) for text in expositions))
    missing = queried_metrics(load()) - exported
    assert not missing, f"the dashboard queries series no process exports: {sorted(missing)}"
