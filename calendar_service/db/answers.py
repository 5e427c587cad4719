"""The RSVP answer desk: ``POST /events/{id}/rsvps``'s whole write in one round trip.

The hottest route of the API calls the ``answer_rsvp`` function (migration
0007) once, as a prepared statement on a plain asyncpg pool: one implicit
transaction that checks the account, honours the Idempotency-Key, writes the
RSVP, its pending notifications and its outbox message, and stores the reply.
SQLAlchemy Core, a transaction block and nine round trips cost ~6 ms of CPU a
request; this costs a fraction of one. The capacity check fails the statement
at its implicit COMMIT, so a refused answer writes nothing, its key included.

Waiting for a connection is bounded: a full pool is ``Overloaded`` (503 with
``Retry-After``), never a request hanging until the client gives up. Only a
request that finds every connection busy pays for that bound: asyncpg's
acquire timeout wraps the wait in a task and a timer, and the release in
another timer, ~5 % of the route's CPU, so while a connection is free we
take it without one (opening a new connection is bounded by the same
timeout, given to ``connect``). The same bound holds for a request that
reaches the desk late (an event loop starved of CPU held it before): one in
flight longer than a pool wait is ``Overloaded`` too, refused before it
writes anything, rather than written after its client may have given up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import asyncpg

from calendar_service.db.models import EVENT_WITHIN_CAPACITY
from calendar_service.errors import EventFull, Overloaded
from calendar_service.outbox import calendar_route

AnswerOutcome = Literal["stored", "replayed", "key_reused", "no_account", "no_event"]

_ANSWER = (
    "SELECT outcome, status_code, body, changed"
    " FROM answer_rsvp($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
)


def _rsvp_route() -> tuple[str, str]:
    """Where ``rsvp.*`` messages go, from the topology's route table (the function takes it)."""
    created, updated = calendar_route("rsvp.created"), calendar_route("rsvp.updated")
    assert (created.exchange, created.routing_key) == (updated.exchange, updated.routing_key), (
        "rsvp messages route alike"
    )
    return created.exchange, created.routing_key


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """Skip the pool's RESET ALL round trip: ``answer_rsvp`` leaves no session state behind.

    (An open transaction would still be rolled back by the pool before this.)
    """


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """One caller's answer to one event; ``key`` and ``fingerprint`` are its Idempotency-Key's."""

    user_id: uuid.UUID
    event_id: uuid.UUID
    status: str
    guests: int
    key: str | None
    fingerprint: str | None
    correlation_id: uuid.UUID | None
    #: when the API admitted the request (``time.monotonic()``); None: not known
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the function answered; ``body`` is the reply's JSON (None when refused)."""

    outcome: AnswerOutcome
    status_code: int
    body: bytes | None
    changed: bool


class RsvpAnswers:
    """Answers RSVPs through ``answer_rsvp``; owns the asyncpg pool it runs on."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        producer: str,
        channels: Sequence[str],
        acquire_timeout_s: float,
    ) -> None:
        self._pool = pool
        self.pool = pool  #: for the pool gauges only; requests go through answer()
        self._acquire_timeout_s = acquire_timeout_s
        self._size = pool.get_max_size()
        self._in_use = 0
        exchange, routing_key = _rsvp_route()
        self._fixed = (producer, list(channels), exchange, routing_key)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        size: int,
        producer: str,
        channels: Sequence[str],
        acquire_timeout_s: float,
        server_settings: Mapping[str, str] | None = None,
    ) -> RsvpAnswers:
        """A pool that opens connections when first needed: the API starts without PostgreSQL.

        ``server_settings`` are the process's session deadlines (statement and lock timeouts).
        """
        pool = await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=size,
            server_settings={"application_name": "calendar_service.rsvps"}
            | dict(server_settings or {}),
            reset=_nothing_to_reset,
            timeout=acquire_timeout_s,
        )
        return cls(pool, producer=producer, channels=channels, acquire_timeout_s=acquire_timeout_s)

    async def answer(self, request: AnswerRequest) -> StoredAnswer:
        received_at = request.received_at
        if received_at is not None and time.monotonic() - received_at > self._acquire_timeout_s:
            raise Overloaded("late")
        # counted before the first await, so concurrent requests see each other
        self._in_use += 1
        try:
            row = await self._answer_on_a_connection(request)
        finally:
            self._in_use -= 1
        assert row is not None
        return StoredAnswer(
            outcome=cast(AnswerOutcome, row[0]), status_code=row[1], body=row[2], changed=row[3]
        )

    async def _answer_on_a_connection(self, request: AnswerRequest) -> asyncpg.Record | None:
        try:
            if self._in_use <= self._size:
                connection = await self._pool.acquire()
            else:
                connection = await self._pool.acquire(timeout=self._acquire_timeout_s)
        except TimeoutError as exc:
            raise Overloaded() from exc
        try:
            return await connection.fetchrow(
                _ANSWER,
                request.user_id,
                request.event_id,
                request.status,
                request.guests,
                request.key,
                request.fingerprint,
                request.correlation_id,
                *self._fixed,
            )
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name == EVENT_WITHIN_CAPACITY:
                raise EventFull() from exc
            raise
        finally:
            await self._pool.release(connection)

    async def aclose(self) -> None:
        await asyncio.wait_for(self._pool.close(), timeout=10)
