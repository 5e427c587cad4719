"""Composition root of the calendar API: every connection it opens, and where it closes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

import redis.asyncio as redis
from aio_pika.abc import AbstractRobustConnection
from limits import RateLimitItem
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.cache import EventCache
from calendar_service.commands import PRODUCER
from calendar_service.config import Settings
from calendar_service.db.answers import RsvpAnswers
from calendar_service.db.session import create_engine
from calendar_service.domain import CHANNELS
from calendar_service.ratelimit import Admission, Limiter, RequestLimits, parse_limit
from calendar_service.security import PasswordHashing, TokenIssuer
from shared.dlq.store import DeadLetterStore, store_session_settings
from shared.service.backoff import Backoff
from shared.service.broker import connect_broker
from shared.service.metrics import forget_pool, watch_pool


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    #: reads that tolerate replication lag (``DATABASE_READ_URL``); else ``engine`` itself
    read_engine: AsyncEngine
    redis: redis.Redis
    tokens: TokenIssuer
    cache: EventCache
    limiter: Limiter
    #: parsed once from the settings
    resend_limit: RateLimitItem
    announcement_limit: RateLimitItem
    #: the tiers, login, registration and RSVP change limits, counted together
    admission: Admission
    limits: RequestLimits
    passwords: PasswordHashing
    dead_letters: DeadLetterStore
    answers: RsvpAnswers
    broker: AbstractRobustConnection | None = None
    _broker_task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        if self._broker_task is not None:
            self._broker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._broker_task
        if self.broker is not None:
            await self.broker.close()
        await self.dead_letters.aclose()
        await self.answers.aclose()
        await self.redis.aclose()
        for pool in ("orm", "orm_replica", "answers"):
            forget_pool(pool)
        if self.has_read_replica:
            await self.read_engine.dispose()
        await self.engine.dispose()

    @property
    def has_read_replica(self) -> bool:
        return self.read_engine is not self.engine


async def _connect_broker(container: Container) -> None:
    """Keep trying in the background: the API serves without the broker (outbox)."""
    container.broker = await connect_broker(
        container.settings.amqp_url, "calendar-api", backoff=Backoff(first_s=1.0)
    )


async def bootstrap(settings: Settings) -> Container:
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )
    engine = create_engine(settings)
    read_engine = engine
    if settings.database_read_url:
        read_engine = create_engine(
            settings,
            url=settings.database_read_url,
            application_name="calendar_service.reads",
        )
    container = Container(
        settings=settings,
        engine=engine,
        read_engine=read_engine,
        redis=client,
        tokens=TokenIssuer(settings.jwt_secret, timedelta(seconds=settings.jwt_ttl_seconds)),
        cache=EventCache(client, mark_writes=read_engine is not engine),
        limiter=Limiter(settings.redis_url, connection_pool=client.connection_pool),
        resend_limit=parse_limit(settings.resend_limit),
        announcement_limit=parse_limit(settings.announcement_limit),
        admission=Admission(client),
        limits=RequestLimits.parse(
            login=settings.login_limit,
            register=settings.register_limit,
            anonymous=settings.rate_limit_anonymous,
            user=settings.rate_limit_user,
            admin=settings.rate_limit_admin,
            rsvp_change=settings.rsvp_change_limit,
        ),
        passwords=PasswordHashing(settings.password_hash_concurrency),
        # the dead-letter store; connects on the first admin request (broker: as ops)
        dead_letters=DeadLetterStore(
            settings.asyncpg_dsn,
            settings.dead_letter_amqp_url,
            name="calendar-admin",
            pool_timeout_s=settings.db_pool_timeout_s,
            server_settings=store_session_settings(settings.db_server_settings),
        ),
        answers=await RsvpAnswers.connect(
            settings.asyncpg_dsn,
            size=settings.db_pool_size,
            producer=PRODUCER,
            channels=CHANNELS,
            acquire_timeout_s=settings.db_pool_timeout_s,
            server_settings=settings.db_server_settings,
        ),
    )
    watch_pool("orm", container.engine)
    if container.has_read_replica:
        watch_pool("orm_replica", container.read_engine)
    watch_pool("answers", container.answers.pool)
    # readiness reports the broker; RSVPs never wait for it (they go to the outbox)
    container._broker_task = asyncio.create_task(_connect_broker(container))
    return container
