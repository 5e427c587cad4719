"""``rsvp-dlq`` (or ``python -m shared.dlq``): see, replay and purge dead letters in the store.

    rsvp-dlq list
    rsvp-dlq groups
    rsvp-dlq show email.rsvp_events.dlq --reason invalid_recipient
    rsvp-dlq replay email.rsvp_events.dlq --since 2030-05-01T00:00Z --rate 200 --dry-run
    rsvp-dlq replay --group 3f2a9c… --yes
    rsvp-dlq purge email.commands.dlq --message-id 5f0c… --yes

Works on the dead-letter store the archiver fills (``DATABASE_URL``); a
replay publishes with ``AMQP_URL`` (default: the ``ops`` broker user on the
local ``rsvp`` vhost). Replay and purge ask before they act; ``--yes`` skips
that. Both are written to the audit log under the name of the OS user.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
import typer
import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shared.dlq.copies import ReplayTarget
from shared.dlq.queries import StoredLetter, StoreFilter
from shared.dlq.replays import ReplayOrder
from shared.dlq.store import DeadLetterStore, store_session_settings
from shared.dlq.views import letters_table
from shared.messaging.topology import dead_letter_queues
from shared.settings import ServiceSettings

T = TypeVar("T")

# Plain (click) help: typer's rich help prints a "<bool>" type beside every flag,
# --help included, and boxes that leave little room at 80 columns.
app = typer.Typer(
    help="Dead letters in the store: list, groups, show, replay, purge.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True)


class DlqSettings(ServiceSettings):
    amqp_url: str = "amqp://ops:ops@127.0.0.1:5672/rsvp"


def _actor() -> str:
    return f"rsvp-dlq:{getpass.getuser()}"


def _run(work: Callable[[DeadLetterStore], Awaitable[T]]) -> T:
    settings = DlqSettings()

    async def main() -> T:
        async with DeadLetterStore(
            settings.asyncpg_dsn,
            settings.amqp_url,
            pool_timeout_s=settings.db_pool_timeout_s,
            server_settings=store_session_settings(settings.db_server_settings),
        ) as store:
            return await work(store)

    try:
        return uvloop.run(main())
    except (OSError, ConnectionError, asyncpg.PostgresConnectionError) as exc:
        errors.print(
            f"[red]cannot reach the store or the broker: {exc}[/] (DATABASE_URL, AMQP_URL)"
        )
        raise typer.Exit(5) from None


def _check(queue: str | None) -> None:
    """Refuse an unknown queue before asking anything."""
    if queue is not None and queue not in dead_letter_queues():
        errors.print(f"[red]unknown dead-letter queue {queue!r}[/]; see `rsvp-dlq list`")
        raise typer.Exit(2)


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from None


QueueArg = Annotated[
    str, typer.Argument(metavar="QUEUE", help="a dead-letter queue, e.g. email.rsvp_events.dlq")
]
OptionalQueueArg = Annotated[
    str | None, typer.Argument(metavar="[QUEUE]", help="a dead-letter queue (or --group)")
]
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", metavar="TYPE", help="message type, e.g. rsvp.created"),
]
ReasonOpt = Annotated[
    str | None, typer.Option(metavar="REASON", help="x-fault-reason (or x-death reason)")
]
GroupOpt = Annotated[str | None, typer.Option(metavar="GROUP", help="a failure group (`groups`)")]
IdsOpt = Annotated[
    list[str] | None, typer.Option("--message-id", metavar="ID", help="repeat for several")
]
SinceOpt = Annotated[str | None, typer.Option(metavar="TIME", help="failed at or after (ISO 8601)")]
UntilOpt = Annotated[str | None, typer.Option(metavar="TIME", help="failed before (ISO 8601)")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def _filter(
    queue: str | None,
    type_: str | None,
    reason: str | None,
    ids: list[str] | None,
    since: str | None,
    until: str | None,
    group: str | None = None,
) -> StoreFilter:
    _check(queue)
    return StoreFilter(
        queue=queue,
        type=type_,
        reason=reason,
        message_ids=ids or [],
        since=_moment(since),
        until=_moment(until),
        group=group,
        state="dead",
    )


@app.command("list")
def list_queues() -> None:
    """Every dead-letter queue with its dead letters not yet replayed or deleted."""
    dead = _run(lambda store: store.dead_per_queue())
    table = Table("dead-letter queue", "origin", "messages")
    for name, origin in dead_letter_queues().items():
        table.add_row(name, origin, str(dead.get(name, 0)))
    console.print(table)


@app.command()
def groups() -> None:
    """The failure groups with dead letters, largest first."""
    found = _run(lambda store: store.groups())
    table = Table("group", "queue", "type", "exception", "count", "last failed")
    for group in found:
        exception = ": ".join(filter(None, (group["exception_type"], group["sample_message"])))
        table.add_row(
            group["group"],
            group["queue"],
            group["type"] or "-",
            exception[:80],
            str(group["count"]),
            group["last_failed_at"] or "-",
        )
    console.print(table)


@app.command()
def show(
    queue: QueueArg,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=200, metavar="N")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, headers and body")] = False,
) -> None:
    """The dead letters of QUEUE (oldest first) with why they failed."""
    selection = _filter(queue, type_, reason, message_id, since, until)

    async def read(store: DeadLetterStore) -> tuple[list[StoredLetter], int]:
        page = await store.page(selection, limit=limit)
        return page.items, await store.count(selection)

    items, matched = _run(read)
    if as_json:
        for item in items:
            sys.stdout.write(orjson.dumps(item.as_dict()).decode() + "\n")
        return
    console.print(letters_table(queue, [s.letter for s in items], width=console.width))
    console.print(f"{len(items)} shown of {matched} matching")


def _progress_bar(label: str) -> tuple[Progress, Callable[[dict[str, Any]], None]]:
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed again {task.fields[failed]}"),
        TimeRemainingColumn(),
        console=errors,
    )
    task = progress.add_task(label, total=None, failed=0)

    def update(status: dict[str, Any]) -> None:
        progress.update(
            task,
            total=status["matched"],
            completed=status["replayed"],
            failed=status["failed_again"],
        )

    return progress, update


async def _replay_watched(
    store: DeadLetterStore,
    order: ReplayOrder,
    target: str,
    update: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    replay_id, _ = await store.start_replay(order, target=target)
    done = asyncio.create_task(store.wait(replay_id))
    while not done.done():
        update(await store.replay(replay_id))
        await asyncio.wait({done}, timeout=0.2)
    status = await store.replay(replay_id)
    update(status)
    return status


@app.command(short_help="Send picked dead letters back to their origin queue.")
def replay(
    queue: OptionalQueueArg = None,
    group: GroupOpt = None,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, metavar="N", help="replay at most this many")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(min=1, max=100_000, metavar="PER_SECOND", help="messages per second"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, change nothing")] = False,
    via_exchange: Annotated[
        bool,
        typer.Option(
            "--via-exchange",
            help="publish through the original exchange and routing key instead of to the "
            "origin queue alone (a fanout exchange reaches every bound queue again)",
        ),
    ] = False,
    stop_if_failing: Annotated[
        bool | None,
        typer.Option(
            "--stop-if-failing/--keep-going",
            help="stop when the replayed messages fail again (default: on for --group)",
        ),
    ] = None,
    yes: YesOpt = False,
) -> None:
    """Send the picked dead letters of QUEUE (or of --group) back, attempts reset."""
    if queue is None and group is None:
        raise typer.BadParameter("name a QUEUE or a --group")
    selection = _filter(queue, type_, reason, message_id, since, until, group)
    target = group or queue or ""
    if not dry_run and not yes:
        where = "their original exchange" if via_exchange else "their origin queue"
        typer.confirm(f"Replay the matching dead letters of {target} to {where}?", abort=True)
    order = ReplayOrder(
        selection,
        actor=_actor(),
        limit=limit,
        rate=rate,
        dry_run=dry_run,
        route=ReplayTarget.EXCHANGE if via_exchange else ReplayTarget.QUEUE,
        stop_if_failing=group is not None if stop_if_failing is None else stop_if_failing,
    )
    progress, update = _progress_bar("dry run" if dry_run else "replay")
    with progress:
        status = _run(lambda store: _replay_watched(store, order, target, update))
    if dry_run:
        console.print(f"dry run: {status['matched']} would be replayed; nothing changed")
        return
    console.print(f"matched {status['matched']}, replayed {status['replayed']}")
    if status["state"] == "stopped":
        errors.print(f"[red]stopped: {status['stopped_reason']}[/]; the rest is still dead")
        raise typer.Exit(4)


@app.command(short_help="Delete picked dead letters of QUEUE.")
def purge(
    queue: QueueArg,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    yes: YesOpt = False,
) -> None:
    """Delete the picked dead letters of QUEUE (every one if no filter is given).

    They are marked deleted, kept for DEAD_LETTER_RETENTION, then removed.
    """
    selection = _filter(queue, type_, reason, message_id, since, until)
    if not yes:
        unfiltered = selection == StoreFilter(queue=queue, state="dead")
        what = "EVERY dead letter" if unfiltered else "the matching dead letters"
        typer.confirm(f"Delete {what} of {queue}?", abort=True)
    deleted = _run(lambda store: store.delete(selection, actor=_actor(), target=queue))
    console.print(f"deleted {deleted}")


def main() -> None:
    app()
