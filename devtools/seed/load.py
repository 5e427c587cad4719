"""Loading a seed with COPY: into an empty schema fast, or beside existing rows.

Into empty tables (or ones ``--force`` emptied) everything happens in one
transaction: the tables are truncated, their unique keys and secondary
indexes dropped, the rows copied with ``FREEZE`` (written already frozen and
visible, so the first reads do not rewrite every page), and the keys and
indexes built again from their own definitions, in bulk. With ``--append``
the indexes stay and the rows are copied beside the others.

Either way the session runs with ``session_replication_role = replica``, so
no trigger fires per row: the event counters are written by the seed itself
(they add up to its RSVPs), foreign keys are not checked per row (the seed
refers only to its own rows), and the relay is not woken for history that is
already published.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import asyncpg

#: the tables a seed writes, parents first
TABLES = ("users", "events", "rsvps", "delivery_status", "outbox", "push_subscriptions")


@dataclass(frozen=True)
class SchemaObject:
    """A unique key or index of a seeded table, and how to create it again."""

    table: str
    name: str
    kind: str  # "key" (unique) or "index"
    definition: str

    def drop(self) -> str:
        if self.kind == "index":
            return f'DROP INDEX "{self.name}"'
        return f'ALTER TABLE "{self.table}" DROP CONSTRAINT "{self.name}"'

    def create(self) -> str:
        if self.kind == "index":
            return self.definition
        return f'ALTER TABLE "{self.table}" ADD CONSTRAINT "{self.name}" {self.definition}'


#: Unique keys no foreign key points at, and plain indexes: what is built again after the load.
#: Primary keys and foreign keys stay: seeded ids ascend, so the primary keys
#: grow at their right edge, and foreign keys are not checked row by row in
#: replica mode (the seed's rows refer only to rows of the same seed), so
#: nothing has to validate twenty million references afterwards.
OBJECTS = """
SELECT c.conrelid::regclass::text, c.conname, 'key', pg_get_constraintdef(c.oid)
FROM pg_constraint c
WHERE c.contype = 'u' AND c.conrelid = ANY($1::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)
UNION ALL
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, 'index',
       pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = ANY($1::regclass[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""


async def schema_objects(connection: asyncpg.Connection) -> list[SchemaObject]:
    """The unique keys and plain indexes of the seeded tables."""
    rows = await connection.fetch(OBJECTS, list(TABLES))
    return [SchemaObject(*row) for row in rows]


async def rows_present(connection: asyncpg.Connection) -> dict[str, int]:
    """Which seeded tables hold rows (1) or none (0): a look, not a count."""
    present = {}
    for table in TABLES:
        present[table] = int(
            await connection.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")')  # noqa: S608
        )
    return present


class Prefetched:
    """An iterator of chunks produced in a thread, so building rows overlaps the server's COPY."""

    def __init__(self, chunks: Iterator[bytes], depth: int = 8) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._fill, args=(chunks,), daemon=True)
        self._thread.start()

    def _fill(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                self._queue.put(chunk)
        except BaseException as exc:  # handed to the reader, which raises it
            self._queue.put(exc)
            return
        self._queue.put(None)

    def __aiter__(self) -> Prefetched:
        return self

    async def __anext__(self) -> bytes:
        item = await asyncio.to_thread(self._queue.get)
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item


async def copy(
    connection: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    chunks: Iterator[bytes],
    *,
    freeze: bool,
) -> None:
    await connection.copy_to_table(
        table, source=Prefetched(chunks), columns=list(columns), format="text", freeze=freeze
    )


async def prepare_session(connection: asyncpg.Connection) -> None:
    """No per-row triggers, and room for building indexes over millions of rows."""
    await connection.execute("SET session_replication_role = replica")
    await connection.execute("SET maintenance_work_mem = '512MB'")
    await connection.execute("SET max_parallel_maintenance_workers = 2")
    await connection.execute("SET statement_timeout = 0")


async def empty_and_strip(connection: asyncpg.Connection) -> list[SchemaObject]:
    """Truncate the seeded tables (and what refers to them) and drop their unique keys and indexes.

    Call inside the transaction that copies: COPY FREEZE needs the truncation there.
    """
    objects = await schema_objects(connection)
    names = ", ".join(f'"{t}"' for t in TABLES)
    await connection.execute(f"TRUNCATE {names} CASCADE")
    for obj in objects:
        await connection.execute(obj.drop())
    return objects


async def rebuild(
    connection: asyncpg.Connection, objects: Sequence[SchemaObject], step: Callable[[str], None]
) -> None:
    for obj in objects:
        step(obj.name)
        await connection.execute(obj.create())
