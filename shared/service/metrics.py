"""Metrics every process exports beside its own: CPU and memory, and its database pools.

``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` come from
prometheus_client's ``ProcessCollector``; with them the dashboard shows which
process saturates first. ``db_pool_connections{pool, state}`` is read from the
pools at scrape time (``in_use``, ``idle``, ``max``), so a pool that runs dry
shows before requests start to wait on it.

A process registers its pools with :func:`watch_pool` when it opens them and
forgets them with :func:`forget_pool` when it closes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import asyncpg
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool


class _Sizes(Protocol):
    def __call__(self) -> tuple[int, int, int]: ...


def _asyncpg_sizes(pool: asyncpg.Pool) -> _Sizes:
    def sizes() -> tuple[int, int, int]:
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle, pool.get_max_size()

    return sizes


def _engine_sizes(engine: AsyncEngine) -> _Sizes:
    def sizes() -> tuple[int, int, int]:
        pool = engine.sync_engine.pool
        if not isinstance(pool, QueuePool):  # NullPool and friends keep no connections
            return 0, 0, 0
        in_use = pool.checkedout()
        return in_use, pool.checkedin(), pool.size() + max(pool._max_overflow, 0)

    return sizes


class PoolGauges(Collector):
    """``db_pool_connections`` for every pool watched in this process."""

    def __init__(self) -> None:
        self._pools: dict[str, _Sizes] = {}

    def watch(self, name: str, pool: asyncpg.Pool | AsyncEngine) -> None:
        self._pools[name] = (
            _engine_sizes(pool) if isinstance(pool, AsyncEngine) else _asyncpg_sizes(pool)
        )

    def forget(self, name: str) -> None:
        self._pools.pop(name, None)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "db_pool_connections",
            "PostgreSQL connections of a pool: in use, idle, and the most it may open",
            labels=["pool", "state"],
        )
        for name, sizes in sorted(self._pools.items()):
            in_use, idle, most = sizes()
            family.add_metric([name, "in_use"], in_use)
            family.add_metric([name, "idle"], idle)
            family.add_metric([name, "max"], most)
        yield family

    def describe(self) -> Iterable[Metric]:
        return ()  # collected at scrape time; nothing to check at registration


POOLS = PoolGauges()
#: What a background process adds to its own registry's exposition.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=PROCESS_REGISTRY)
PROCESS_REGISTRY.register(POOLS)
#: The pools alone, for the API, whose default registry has the process metrics already.
POOL_REGISTRY = CollectorRegistry(auto_describe=False)
POOL_REGISTRY.register(POOLS)


def watch_pool(name: str, pool: asyncpg.Pool | AsyncEngine) -> None:
    POOLS.watch(name, pool)


def forget_pool(name: str) -> None:
    POOLS.forget(name)


def process_metrics() -> bytes:
    """CPU, memory and pools of this process, in the text exposition format."""
    return generate_latest(PROCESS_REGISTRY)
