"""Helpers for testing the consumer runtime: messages, a recording handler, a running runtime."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from shared.management import _split_credentials
from shared.messaging.errors import MessagingError
from shared.messaging.runtime import ConsumerRuntime
from shared.schemas import (
    Attendee,
    DeliveryFailedPayload,
    EmailFailed,
    EmailSend,
    EmailSent,
    EmailSentPayload,
    Envelope,
    EventSummary,
    NotificationCommand,
    RsvpCreated,
    RsvpPayload,
)
from tests.support.services import BrokerEnv

PRODUCER = "tests"


def _event() -> EventSummary:
    return EventSummary(
        event_id=uuid.uuid4(),
        title="Runtime test meetup",
        starts_at=datetime.now(UTC) + timedelta(days=7),
    )


def _attendee() -> Attendee:
    return Attendee(user_id=uuid.uuid4(), email="ada@example.com", name="Ada")


def rsvp_created() -> RsvpCreated:
    payload = RsvpPayload(
        rsvp_id=uuid.uuid4(), event=_event(), attendee=_attendee(), status="going", version=1
    )
    return RsvpCreated.first(payload, producer=PRODUCER)


def email_send() -> EmailSend:
    command = NotificationCommand(kind="confirmation", recipient=_attendee(), event=_event())
    return EmailSend.first(command, producer=PRODUCER)


def _user_and_event(cause: Envelope[Any]) -> tuple[uuid.UUID, uuid.UUID]:
    data = cause.data
    person = data.attendee if isinstance(data, RsvpPayload) else data.recipient
    return person.user_id, data.event.event_id


def email_sent_for(cause: Envelope[Any]) -> EmailSent:
    user_id, event_id = _user_and_event(cause)
    payload = EmailSentPayload(
        source_message_id=cause.message_id,
        source_type=cause.type,
        kind="confirmation",
        user_id=user_id,
        event_id=event_id,
        recipient="ada@example.com",
        smtp_message_id="<test@example.com>",
    )
    return EmailSent.caused_by(cause, payload, producer=PRODUCER)


def email_failed_for(cause: Envelope[Any], error: MessagingError) -> list[Envelope[Any]]:
    """An ``on_dead_letter`` callback, as the email consumer will have one."""
    user_id, event_id = _user_and_event(cause)
    payload = DeliveryFailedPayload(
        source_message_id=cause.message_id,
        source_type=cause.type,
        kind="confirmation",
        user_id=user_id,
        event_id=event_id,
        reason=error.reason,
        error=str(error)[:2000],
    )
    return [EmailFailed.caused_by(cause, payload, producer=PRODUCER)]


Behaviour = Callable[[Envelope[Any], int], Awaitable[Sequence[Envelope[Any]]]]


class RecordingHandler:
    """A handler that records every call and does what ``behaviour`` says.

    ``behaviour`` gets the message and the 1-based call number; by default
    it answers every message with an ``email.sent`` follow-up.
    """

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.calls: list[Envelope[Any]] = []
        self.call_times: list[float] = []
        self._behaviour = behaviour

    async def __call__(self, message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        self.calls.append(message)
        self.call_times.append(time.monotonic())
        if self._behaviour is None:
            return [email_sent_for(message)]
        return await self._behaviour(message, len(self.calls))

    async def wait_for_calls(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"handler called {len(self.calls)} times, expected {count}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(
    runtime: ConsumerRuntime, timeout: float = 10.0
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``runtime`` in the background until the block ends; stop it and wait for it."""
    task = asyncio.create_task(runtime.run())
    deadline = time.monotonic() + timeout
    while not runtime.ready:
        if task.done():
            await task  # raises what made it stop
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError("runtime did not start consuming")
        await asyncio.sleep(0.02)
    try:
        yield task
    finally:
        runtime.stop()
        await asyncio.wait_for(task, timeout)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from localhost:``port``; returns status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def drop_broker_connections(broker: BrokerEnv, timeout: float = 10.0) -> int:
    """Close every client connection to the broker's vhost, as a broker restart would."""
    base_url, auth = _split_credentials(broker.admin_url)
    vhost = quote(broker.vhost, safe="")
    async with httpx.AsyncClient(base_url=f"{base_url}/api", auth=auth) as admin:
        deadline = time.monotonic() + timeout
        while not (connections := (await admin.get(f"/vhosts/{vhost}/connections")).json()):
            if time.monotonic() > deadline:
                raise AssertionError("the management API lists no connection to drop")
            await asyncio.sleep(0.2)
        for connection in connections:
            name = quote(connection["name"], safe="")
            response = await admin.delete(f"/connections/{name}")
            response.raise_for_status()
    return len(connections)
