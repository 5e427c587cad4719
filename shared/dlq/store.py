"""The dead-letter store as the admin API, the page and ``rsvp-dlq`` use it (design §9).

:class:`DeadLetterStore` holds a database pool and, for replays, one broker
connection as the ``ops`` user, both opened on first use. Reads never touch
a queue. Replays run as background jobs of the process that started them
(:mod:`shared.dlq.replays`); their state is in the database, so any process
can report on or cancel any replay. Deletes and replays write the audit log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from types import TracebackType
from typing import Any, Self, cast

import aio_pika
import aiormq
import asyncpg
import orjson
from aio_pika.abc import AbstractRobustConnection

from shared.dlq import audit, queries
from shared.dlq.queries import StoreFilter
from shared.dlq.replays import ABANDONED_AFTER_S, FINISH, ReplayJob, ReplayOrder
from shared.messaging.batch_publisher import BatchPublisher
from shared.service.broker import open_broker_connection
from shared.service.database import bounded_pool
from shared.settings import DB_POOL_TIMEOUT_S

START_REPLAY = """
INSERT INTO dead_letter_replays (id, actor, selection, route, rate, stop_if_failing, state, matched)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)
RETURNING started_at
"""
#: A running replay whose row was not touched for ABANDONED_AFTER_S lost its process.
REPLAY_STATUS = """
SELECT r.id, r.actor, r.matched, r.replayed, r.stopped_reason, r.started_at, r.finished_at,
    r.selection,
    CASE WHEN r.state = 'running' AND r.updated_at < now() - make_interval(secs => $1)
        THEN 'stopped' ELSE r.state END AS state,
    greatest(r.failed_again, (SELECT count(*) FROM dead_letters d WHERE d.replay_of = r.id))
        AS failed_again
FROM dead_letter_replays r
"""
DELETE = """
UPDATE dead_letters SET state = 'deleted', changed_at = now()
WHERE id IN (SELECT id FROM dead_letters WHERE state = 'dead' AND {where} FOR UPDATE)
"""


class UnknownReplay(KeyError):
    """No replay with this id."""


class BrokerUnreachable(ConnectionError):
    """A replay could not start: no channel to the broker (its row says so)."""


def replay_as_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "replay_id": str(row["id"]),
        "state": row["state"],
        "matched": row["matched"],
        "replayed": row["replayed"],
        "failed_again": row["failed_again"],
        "stopped_reason": row["stopped_reason"],
        "actor": row["actor"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


def store_session_settings(settings: dict[str, str]) -> dict[str, str]:
    """The process's deadlines the store keeps: the lock wait, not the statement timeout."""
    return {key: value for key, value in settings.items() if key != "statement_timeout"}


class DeadLetterStore:
    def __init__(
        self,
        dsn: str,
        amqp_url: str,
        *,
        name: str = "rsvp-dlq",
        pool_size: int = 6,
        pool_timeout_s: float = DB_POOL_TIMEOUT_S,
        server_settings: dict[str, str] | None = None,
    ):
        """``server_settings``: session settings of the store's connections.

        Callers pass the lock timeout only (:func:`store_session_settings`): a
        bulk delete of a million letters is one statement that may run longer
        than a request's statement timeout, and must not fail for it.
        """
        self._dsn = dsn
        self._pool_timeout_s = pool_timeout_s
        self._server_settings = server_settings
        self._amqp_url = amqp_url
        self._name = name
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._broker: AbstractRobustConnection | None = None
        self._opening = asyncio.Lock()
        self._jobs: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the replays of this process (their rows say so), then close."""
        for job in list(self._jobs.values()):
            job.cancel()
        if self._jobs:
            await asyncio.wait(list(self._jobs.values()))
        if self._broker is not None:
            await self._broker.close()
        if self._pool is not None:
            await self._pool.close()

    async def db(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                self._pool = await bounded_pool(
                    self._dsn,
                    acquire_timeout_s=self._pool_timeout_s,
                    min_size=1,
                    max_size=self._pool_size,
                    server_settings=self._server_settings,
                )
            return self._pool

    async def _broker_connection(self) -> AbstractRobustConnection:
        async with self._opening:
            if self._broker is None or self._broker.is_closed:
                self._broker = await open_broker_connection(self._amqp_url, self._name)
            return self._broker

    async def page(
        self, selection: StoreFilter, *, limit: int = 50, cursor: str | None = None
    ) -> queries.Page:
        return await queries.page(await self.db(), selection, limit=limit, cursor=cursor)

    async def letter(self, letter_id: int) -> queries.StoredLetter | None:
        row = await (await self.db()).fetchrow(
            "SELECT * FROM dead_letters WHERE id = $1", letter_id
        )
        return queries.stored_letter(row) if row is not None else None

    async def groups(self, *, queue: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await queries.groups(await self.db(), queue=queue, limit=limit)

    async def dead_per_queue(self) -> dict[str, int]:
        return await queries.dead_per_queue(await self.db())

    async def count(self, selection: StoreFilter, *, limit: int | None = None) -> int:
        return await queries.count(await self.db(), selection, limit=limit)

    async def delete(self, selection: StoreFilter, *, actor: str, target: str) -> int:
        """Mark the picked dead letters deleted (retention removes them later); audited."""
        args: list[Any] = []
        sql = DELETE.format(where=selection.where(args))
        async with (await self.db()).acquire() as connection, connection.transaction():
            deleted = int((await connection.execute(sql, *args)).rsplit(" ", 1)[-1])
            await audit.record(
                connection,
                actor=actor,
                action="delete",
                target=target,
                detail={"filter": selection.as_json(), "deleted": deleted},
            )
        return deleted

    async def start_replay(self, order: ReplayOrder, *, target: str) -> tuple[uuid.UUID, int]:
        """Record and audit a replay, start its job (none for a dry run); its id and matched."""
        db = await self.db()
        selection = dataclasses.replace(order.selection, state="dead")
        args: list[Any] = []
        where = selection.where(args)
        replay_id = uuid.uuid4()
        async with db.acquire() as connection, connection.transaction():
            last_id = await connection.fetchval(
                f"SELECT coalesce(max(id), 0) FROM dead_letters WHERE {where}",  # noqa: S608
                *args,
            )
            matched = await queries.count(connection, selection, limit=order.limit)
            started_at = await connection.fetchval(
                START_REPLAY,
                replay_id,
                order.actor,
                orjson.dumps(order.as_json()).decode(),
                order.route.value,
                order.rate,
                order.stop_if_failing,
                "done" if order.dry_run or matched == 0 else "running",
                matched,
            )
            await audit.record(
                connection,
                actor=order.actor,
                action="dry-run replay" if order.dry_run else "replay",
                target=target,
                detail={**order.as_json(), "replay_id": str(replay_id), "matched": matched},
            )
        if order.dry_run or matched == 0:
            return replay_id, matched
        try:
            channel = await (await self._broker_connection()).channel(
                publisher_confirms=True, on_return_raises=True
            )
            raw = cast(aiormq.Channel, await channel.get_underlay_channel())
        except Exception as exc:
            await db.execute(FINISH, replay_id, "stopped", f"broker unreachable: {exc!r}", 0)
            raise BrokerUnreachable(str(exc)) from exc
        job = ReplayJob(
            db,
            BatchPublisher(raw),
            replay_id,
            order,
            matched=matched,
            last_id=last_id,
            started_at=started_at,
        )
        task = asyncio.create_task(self._run(job, channel))
        self._jobs[replay_id] = task
        task.add_done_callback(lambda _: self._jobs.pop(replay_id, None))
        return replay_id, matched

    @staticmethod
    async def _run(job: ReplayJob, channel: aio_pika.abc.AbstractChannel) -> None:
        try:
            await job.run()
        finally:
            await channel.close()

    async def wait(self, replay_id: uuid.UUID) -> None:
        """Until this process's job of ``replay_id`` has ended (the CLI waits for its replay)."""
        if (task := self._jobs.get(replay_id)) is not None:
            await asyncio.wait({task})

    async def replay(self, replay_id: uuid.UUID) -> dict[str, Any]:
        row = await (await self.db()).fetchrow(
            REPLAY_STATUS + " WHERE r.id = $2", ABANDONED_AFTER_S, replay_id
        )
        if row is None:
            raise UnknownReplay(str(replay_id))
        return replay_as_dict(row)

    async def replays(self, *, limit: int = 20) -> list[dict[str, Any]]:
        rows = await (await self.db()).fetch(
            REPLAY_STATUS + " ORDER BY r.started_at DESC LIMIT $2", ABANDONED_AFTER_S, limit
        )
        return [replay_as_dict(row) for row in rows]

    async def cancel_replay(self, replay_id: uuid.UUID, *, actor: str) -> dict[str, Any]:
        """Ask the replay's job (in whichever process) to stop after its current batch."""
        db = await self.db()
        async with db.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "UPDATE dead_letter_replays SET cancel_requested = true WHERE id = $1", replay_id
            )
            if status.endswith(" 0"):
                raise UnknownReplay(str(replay_id))
            await audit.record(
                connection, actor=actor, action="cancel replay", target=str(replay_id), detail={}
            )
        return await self.replay(replay_id)

    async def audit(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[audit.AuditEntry], str | None]:
        return await audit.entries(await self.db(), limit=limit, cursor=cursor)
