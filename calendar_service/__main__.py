"""`python -m calendar_service`: serve the API with uvicorn on uvloop."""

from __future__ import annotations

import uvicorn

from calendar_service.app import create_app
from calendar_service.config import ApiSettings
from shared.logs import configure_logging
from shared.service.heap import settle_heap


def main() -> None:
    settings = ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format)
    app = create_app(settings)
    settle_heap()  # modules, routes and schemas are built: freeze them (shared/service/heap.py)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        # configure_logging mutes uvicorn's access logger; this spares building each line too
        access_log=False,
        # the client address of per-IP limits: X-Forwarded-For, from the load balancer only
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
