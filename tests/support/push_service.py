"""A real Web Push service for tests: ``devtools.pushsink`` served by uvicorn in the test's loop.

    async with running_push_service() as push:
        subscription = push.subscribe()           # keys the "browser" keeps
        ...                                       # register subscription.as_json() with the API
        push.answer_next(subscription, 410)       # script the next answer
        [received] = await push.wait_for(1)
        assert received.notification["title"] == ...

It verifies the VAPID JWT and decrypts every push, like a browser's push
service and the browser together (see ``devtools/pushsink.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from devtools.pushsink import PushSink, server
from tests.support.ports import free_port


@asynccontextmanager
async def running_push_service(host: str = "127.0.0.1") -> AsyncIterator[PushSink]:
    port = free_port()
    sink = PushSink(origin=f"http://{host}:{port}")
    uvicorn_server = server(sink, host, port)
    task = asyncio.create_task(uvicorn_server.serve())
    try:
        async with asyncio.timeout(10):
            while not uvicorn_server.started:
                if task.done():
                    await task  # raises what stopped it
                await asyncio.sleep(0.01)
        yield sink
    finally:
        uvicorn_server.should_exit = True
        await asyncio.wait_for(task, 10)
