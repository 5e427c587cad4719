"""Operations endpoints: liveness, readiness (DB, broker, Redis), Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from calendar_service.api.deps import ContainerDep

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _database(container: ContainerDep) -> None:
    async with container.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _redis(container: ContainerDep) -> None:
    await container.redis.ping()


async def _broker(container: ContainerDep) -> None:
    broker = container.broker
    if broker is None or broker.is_closed:
        raise ConnectionError("not connected to RabbitMQ")


@router.get("/readyz")
async def readyz(container: ContainerDep) -> JSONResponse:
    checks = {"database": _database, "broker": _broker, "redis": _redis}
    results = await asyncio.gather(
        *(asyncio.wait_for(check(container), timeout=2) for check in checks.values()),
        return_exceptions=True,
    )
    report = {
        name: "ok" if not isinstance(result, BaseException) else f"failed: {result!r}"[:200]
        for name, result in zip(checks, results, strict=True)
    }
    ready = all(value == "ok" for value in report.values())
    return JSONResponse({"ready": ready, "checks": report}, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
