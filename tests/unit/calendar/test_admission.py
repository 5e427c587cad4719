"""The admission limit: past ``limit`` requests in flight, 503 with Retry-After at once.

Driven as ASGI, no server: an inner app that holds each request until the
test lets it go, so the test decides how many are in flight.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from calendar_service.api.admission import AdmissionLimit, admitted_at
from calendar_service.api.errors import status_of
from calendar_service.config import Settings
from calendar_service.db.answers import AnswerRequest, RsvpAnswers
from calendar_service.errors import Overloaded


@dataclass
class HeldApp:
    """Answers 200 once ``release`` is set; ``entered`` counts requests that reached it."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: int = 0
    fail: bool = False
    seen_admitted_at: list[float | None] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered += 1
        self.seen_admitted_at.append(admitted_at())
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the route broke")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@dataclass
class Answer:
    messages: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return bytes(self.messages[1]["body"])


def http_scope(path: str = "/events/1/rsvps") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": []}


async def nothing_sent() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def shed_in_flight() -> float:
    return REGISTRY.get_sample_value("http_requests_shed_total", {"reason": "in_flight"}) or 0.0


async def started(limit: AdmissionLimit, app: HeldApp, count: int) -> list[asyncio.Task[None]]:
    """``count`` requests in flight, each held inside ``app``."""
    answers = [Answer() for _ in range(count)]
    tasks = [asyncio.create_task(limit(http_scope(), nothing_sent, a.send)) for a in answers]
    while app.entered < count:
        await asyncio.sleep(0)
    return tasks


async def test_a_request_past_the_limit_is_answered_503_with_retry_after_at_once() -> None:
    app = HeldApp()
    limit = AdmissionLimit(app, limit=2)
    held = await started(limit, app, 2)
    shed_before = shed_in_flight()

    refused = Answer()
    await asyncio.wait_for(limit(http_scope(), nothing_sent, refused.send), timeout=1.0)

    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"1"
    assert refused.headers[b"content-type"] == b"application/json"
    assert orjson.loads(refused.body) == {"detail": str(Overloaded())}
    assert app.entered == 2, "the refused request never reached the app"
    assert shed_in_flight() == shed_before + 1
    app.release.set()
    await asyncio.gather(*held)
    assert limit.in_flight == 0


async def test_a_slot_freed_by_a_finished_request_admits_the_next() -> None:
    app = HeldApp()
    limit = AdmissionLimit(app, limit=1)
    app.release.set()
    first, second = Answer(), Answer()

    await limit(http_scope(), nothing_sent, first.send)
    await limit(http_scope(), nothing_sent, second.send)

    assert (first.status, second.status) == (200, 200)
    assert limit.in_flight == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_are_never_refused_and_not_counted(path: str) -> None:
    app = HeldApp()
    limit = AdmissionLimit(app, limit=1)
    held = await started(limit, app, 1)
    probe = Answer()
    probing = asyncio.create_task(limit(http_scope(path), nothing_sent, probe.send))
    while app.entered < 2:
        await asyncio.sleep(0)

    assert limit.in_flight == 1
    app.release.set()
    await asyncio.gather(probing, *held)
    assert probe.status == 200
    assert limit.in_flight == 0


async def test_a_request_that_raises_gives_its_slot_back() -> None:
    app = HeldApp(fail=True)
    limit = AdmissionLimit(app, limit=1)
    app.release.set()

    with pytest.raises(RuntimeError):
        await limit(http_scope(), nothing_sent, Answer().send)

    assert limit.in_flight == 0
    app.fail = False
    after = Answer()
    await limit(http_scope(), nothing_sent, after.send)
    assert after.status == 200


async def test_a_cancelled_request_gives_its_slot_back() -> None:
    app = HeldApp()
    limit = AdmissionLimit(app, limit=3)
    held = await started(limit, app, 3)

    for task in held:  # the client went away, or the server is shutting down
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)

    assert all(task.cancelled() for task in held)
    assert limit.in_flight == 0


async def test_an_admitted_request_knows_when_it_was_admitted() -> None:
    app = HeldApp()
    app.release.set()
    before = time.monotonic()

    await AdmissionLimit(app, limit=1)(http_scope(), nothing_sent, Answer().send)

    (seen,) = app.seen_admitted_at
    assert seen is not None
    assert seen >= before
    assert admitted_at() is None, "reset once the request is done"


async def test_lifespan_and_other_scopes_pass_through_uncounted() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    limit = AdmissionLimit(app, limit=1)
    limit.in_flight = 1  # full

    await limit({"type": "lifespan"}, nothing_sent, Answer().send)

    assert seen == ["lifespan"]


@pytest.mark.parametrize("value", [0, -1, 10_000])
def test_an_in_flight_limit_out_of_bounds_is_refused_at_start_up(value: int) -> None:
    with pytest.raises(ValidationError, match="max_requests_in_flight"):
        Settings(max_requests_in_flight=value)


def test_the_middleware_refuses_a_limit_that_admits_nothing() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AdmissionLimit(HeldApp(), limit=0)


class PoolNeverToBeTouched:
    """The one pool method the desk calls up front; taking a connection fails the test."""

    def get_max_size(self) -> int:
        return 1

    async def acquire(self, *, timeout: float | None = None) -> None:
        raise AssertionError("a late answer took a database connection")


def answer_request(received_at: float | None) -> AnswerRequest:
    return AnswerRequest(
        user_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        status="going",
        guests=0,
        key=None,
        fingerprint=None,
        correlation_id=None,
        received_at=received_at,
    )


async def test_an_answer_in_flight_longer_than_a_pool_wait_is_refused_before_the_database() -> None:
    desk = RsvpAnswers(
        PoolNeverToBeTouched(),  # type: ignore[arg-type]
        producer="calendar-service",
        channels=("email", "push"),
        acquire_timeout_s=0.5,
    )

    with pytest.raises(Overloaded) as refused:
        await desk.answer(answer_request(received_at=time.monotonic() - 0.6))

    assert refused.value.reason == "late"
    assert status_of(refused.value) == 503
