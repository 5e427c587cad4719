"""Debian's Prometheus (and process-exporter) scraping a benchmark's processes, on loopback.

The scrape jobs carry the names compose's ``deploy/prometheus/prometheus.yml``
gives them, so the dashboard's queries (which group by ``job``) read the same
here as in Grafana. Data lives in a temporary directory and goes with it.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from devtools.env import PROCESS_EXPORTER, PROMETHEUS
from tests.support.ports import free_port
from tests.support.processes import ROOT, reap

SCRAPE_INTERVAL_S = 2
QUEUE_FAMILIES = ["queue_coarse_metrics", "queue_consumer_count", "channel_queue_metrics"]


def config(
    jobs: Mapping[str, Sequence[str]], rabbitmq: str, vhost: str, processes: str
) -> dict[str, object]:
    """A Prometheus config: ``jobs`` maps a job name to ``host:port`` targets."""
    scrape: list[dict[str, object]] = [
        {"job_name": name, "static_configs": [{"targets": list(targets)}]}
        for name, targets in jobs.items()
    ]
    scrape.append({"job_name": "rabbitmq", "static_configs": [{"targets": [rabbitmq]}]})
    scrape.append(
        {
            "job_name": "rabbitmq-queues",
            "metrics_path": "/metrics/detailed",
            "params": {"vhost": [vhost], "family": QUEUE_FAMILIES},
            "static_configs": [{"targets": [rabbitmq]}],
        }
    )
    scrape.append({"job_name": "processes", "static_configs": [{"targets": [processes]}]})
    interval = f"{SCRAPE_INTERVAL_S}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": scrape,
    }


async def _until_ready(url: str, process: asyncio.subprocess.Process, what: str) -> None:
    async with httpx.AsyncClient(timeout=1) as client, asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _start(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


@asynccontextmanager
async def scraping(
    jobs: Mapping[str, Sequence[str]], rabbitmq_prometheus_url: str, vhost: str, directory: Path
) -> AsyncIterator[str]:
    """Prometheus scraping ``jobs``, RabbitMQ and the machine's processes; yields its URL."""
    for program in (PROMETHEUS, PROCESS_EXPORTER):
        if not shutil.which(program):
            raise SystemExit(f"{program} is missing: `make dashboard-snapshot` installs it")
    exporter_port, port = free_port(), free_port()
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    rabbitmq = urlsplit(rabbitmq_prometheus_url).netloc
    settings = config(jobs, rabbitmq, vhost, f"127.0.0.1:{exporter_port}")
    (directory / "prometheus.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    async with AsyncExitStack() as stack:
        exporter = await _start(
            PROCESS_EXPORTER,
            "-config.path",
            str(ROOT / "deploy" / "prometheus" / "process-exporter.yml"),
            "-web.listen-address",
            f"127.0.0.1:{exporter_port}",
        )
        stack.push_async_callback(reap, exporter)
        await _until_ready(f"http://127.0.0.1:{exporter_port}/metrics", exporter, PROCESS_EXPORTER)
        prometheus = await _start(
            PROMETHEUS,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        )
        stack.push_async_callback(reap, prometheus)
        url = f"http://127.0.0.1:{port}"
        await _until_ready(f"{url}/-/ready", prometheus, PROMETHEUS)
        yield url
