"""Operations endpoints: liveness, readiness, Prometheus metrics.

Readiness means "this replica cannot serve": only the database is required.
With Redis away the API still serves every read and write (the cache and the
limits fall back), and with the broker away RSVPs still commit to the outbox;
answering 503 then would make a load balancer pull every replica at once. So
those two are reported as ``degraded`` in the body (200) and in the
``dependency_up`` gauge, for alerts, not for routing. So is the read replica
(``DATABASE_READ_URL``), whose reads fall back to the primary."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from calendar_service.api.deps import ContainerDep
from calendar_service.api.errors import refusal
from shared.messaging.health import HealthServer
from shared.service.metrics import POOL_REGISTRY

router = APIRouter(tags=["ops"])

#: What the replica cannot serve without; the rest only degrades it.
REQUIRED = frozenset({"database"})
DEPENDENCY_UP = Gauge(
    "dependency_up",
    "1 if the dependency answered the last readiness check, else 0",
    ["dependency"],
)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _database(container: ContainerDep) -> None:
    async with container.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _read_replica(container: ContainerDep) -> None:
    async with container.read_engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _redis(container: ContainerDep) -> None:
    await container.redis.ping()


async def _broker(container: ContainerDep) -> None:
    broker = container.broker
    if broker is None or broker.is_closed:
        raise ConnectionError("not connected to RabbitMQ")


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    ready: bool
    #: dependencies that are away but that the replica serves without
    degraded: list[str]
    #: "ok", or "failed: ..." with the error, per dependency
    checks: dict[str, str]


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database cannot be reached"}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    checks = {"database": _database, "broker": _broker, "redis": _redis}
    if container.has_read_replica:
        checks["read_replica"] = _read_replica
    results = await asyncio.gather(
        *(asyncio.wait_for(check(container), timeout=2) for check in checks.values()),
        return_exceptions=True,
    )
    report = {
        name: "ok" if not isinstance(result, BaseException) else f"failed: {result!r}"[:200]
        for name, result in zip(checks, results, strict=True)
    }
    for name, value in report.items():
        DEPENDENCY_UP.labels(dependency=name).set(1 if value == "ok" else 0)
    ready = all(report[name] == "ok" for name in REQUIRED)
    degraded = [name for name, value in report.items() if value != "ok" and name not in REQUIRED]
    body = {
        "status": "ready" if ready else "unavailable",
        "ready": ready,
        "degraded": degraded,
        "checks": report,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


#: Where the API serves its metrics when ``METRICS_PUBLIC=false`` and no port is set.
PRIVATE_METRICS_PORT = 9100


def exposition() -> bytes:
    """The API's own series (and the process's), then its database pools."""
    return generate_latest() + generate_latest(POOL_REGISTRY)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **refusal(404, "metrics are served on METRICS_PORT instead (METRICS_PUBLIC=false)"),
    },
)
async def metrics(container: ContainerDep) -> Response:
    if not container.settings.metrics_public:
        # the answer of any unknown path: the public port does not say it has metrics
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def private_metrics_server(port: int | None) -> HealthServer:
    """``/metrics`` (and liveness) on a port of its own, off the public one."""
    return HealthServer(
        ready=lambda: True,
        metrics=exposition,
        port=PRIVATE_METRICS_PORT if port is None else port,
    )
