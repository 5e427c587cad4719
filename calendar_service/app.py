"""create_app(): the FastAPI application with its routes, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from calendar_service.api import (
    admin,
    admin_page,
    announcements,
    auth,
    events,
    health,
    push_subscriptions,
    rsvps,
)
from calendar_service.api.admission import AdmissionLimit
from calendar_service.api.errors import install_error_handlers
from calendar_service.api.middleware import AnonymousRateLimit, BodySizeLimit, RequestContext
from calendar_service.api.openapi import install_openapi
from calendar_service.bootstrap import bootstrap
from calendar_service.config import ApiSettings, Settings

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = await bootstrap(settings)
        app.state.container = container
        private_metrics = None
        if not settings.metrics_public:
            private_metrics = health.private_metrics_server(settings.metrics_port)
            await private_metrics.start()
        try:
            yield
        finally:
            if private_metrics is not None:
                await private_metrics.close()
            await container.aclose()

    # /docs and /redoc load Swagger UI and ReDoc from the package, not a CDN,
    # so they work offline (assets under /static-offline-docs).
    app = FastAPIOffline(
        title="RSVP calendar service",
        version="1.0.0",
        summary="Events and RSVPs; every RSVP change is published through an outbox.",
        lifespan=lifespan,
    )
    for module in (
        auth,
        events,
        rsvps,
        announcements,
        push_subscriptions,
        health,
        admin,
        admin_page,
    ):
        app.include_router(module.router)
    admin_page.mount_static(app)
    install_error_handlers(app)
    install_openapi(app, max_body_bytes=MAX_BODY_BYTES)
    app.add_middleware(AnonymousRateLimit)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestContext)
    # last added runs first: a request past the limit is refused before any of the above
    app.add_middleware(AdmissionLimit, limit=settings.max_requests_in_flight)
    return app
