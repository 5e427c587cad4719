"""``rsvp-dlq`` (or ``python -m shared.dlq``): see, replay and purge dead letters.

    rsvp-dlq list
    rsvp-dlq show email.rsvp_events.dlq --reason invalid_recipient
    rsvp-dlq replay email.rsvp_events.dlq --since 2030-05-01T00:00Z --rate 200 --dry-run
    rsvp-dlq purge email.commands.dlq --message-id 5f0c… --yes

Connects with ``AMQP_URL`` (default: the ``ops`` broker user on the local
``rsvp`` vhost). Replay and purge ask before they act; ``--yes`` skips that.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
import typer
import uvloop
from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shared.dlq.office import BrokerRefused, DeadLetterOffice, QueueDepth, UnknownQueue
from shared.dlq.passes import DEFAULT_WINDOW, PassCounts, QueueBusy, ReplayTarget
from shared.dlq.selection import Filter
from shared.dlq.views import letter_as_dict, letters_table
from shared.settings import ServiceSettings

T = TypeVar("T")

# Plain (click) help: typer's rich help prints a "<bool>" type beside every flag,
# --help included, and boxes that leave little room at 80 columns.
app = typer.Typer(
    help="Dead-letter queues: list, show, replay, purge.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True)


class DlqSettings(ServiceSettings):
    amqp_url: str = "amqp://ops:ops@127.0.0.1:5672/rsvp"
    #: Messages in flight during a pass (unacked deliveries, unconfirmed publishes).
    dlq_window: int = Field(default=DEFAULT_WINDOW, ge=1, le=10_000)


def _office() -> DeadLetterOffice:
    settings = DlqSettings()
    return DeadLetterOffice(settings.amqp_url, window=settings.dlq_window)


def _run(work: Callable[[DeadLetterOffice], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _office() as office:
            return await work(office)

    try:
        return uvloop.run(main())
    except UnknownQueue as exc:
        errors.print(f"[red]unknown dead-letter queue {exc}[/]; see `rsvp-dlq list`")
        raise typer.Exit(2) from None
    except QueueBusy as exc:
        errors.print(f"[red]{exc}[/]; try again when it is done")
        raise typer.Exit(3) from None
    except BrokerRefused as exc:
        errors.print(
            f"[red]the broker refused: {exc}[/]; what was not confirmed is still in the DLQ"
            " (is broker/definitions.json loaded? `make broker`)"
        )
        raise typer.Exit(4) from None
    except (OSError, ConnectionError) as exc:
        errors.print(f"[red]cannot reach the broker: {exc}[/]; is RabbitMQ running? (AMQP_URL)")
        raise typer.Exit(5) from None


def _check(queue: str) -> None:
    """Refuse an unknown queue before asking anything."""
    try:
        DeadLetterOffice.origin_of(queue)
    except UnknownQueue:
        errors.print(f"[red]unknown dead-letter queue {queue!r}[/]; see `rsvp-dlq list`")
        raise typer.Exit(2) from None


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
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", metavar="TYPE", help="message type, e.g. rsvp.created"),
]
ReasonOpt = Annotated[
    str | None, typer.Option(metavar="REASON", help="x-fault-reason (or x-death reason)")
]
IdsOpt = Annotated[
    list[str] | None, typer.Option("--message-id", metavar="ID", help="repeat for several")
]
SinceOpt = Annotated[str | None, typer.Option(metavar="TIME", help="failed at or after (ISO 8601)")]
UntilOpt = Annotated[str | None, typer.Option(metavar="TIME", help="failed before (ISO 8601)")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def _filter(
    type_: str | None,
    reason: str | None,
    ids: list[str] | None,
    since: str | None,
    until: str | None,
) -> Filter:
    return Filter(
        type=type_,
        reason=reason,
        message_ids=frozenset(ids or ()),
        since=_moment(since),
        until=_moment(until),
    )


@app.command("list")
def list_queues() -> None:
    """Every dead-letter queue with the messages in it."""
    depths: list[QueueDepth] = _run(lambda office: office.depths())
    table = Table("dead-letter queue", "origin", "messages")
    for depth in depths:
        table.add_row(depth.name, depth.origin, str(depth.messages))
    console.print(table)


@app.command()
def show(
    queue: QueueArg,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, metavar="N")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, headers and body")] = False,
) -> None:
    """The messages of QUEUE (oldest first) with why they failed."""
    selection = _filter(type_, reason, message_id, since, until)
    page = _run(lambda office: office.browse(queue, selection, limit=limit))
    if as_json:
        for letter in page.items:
            sys.stdout.write(orjson.dumps(letter_as_dict(letter)).decode() + "\n")
        return
    console.print(letters_table(queue, page.items, width=console.width))
    console.print(f"{len(page.items)} shown of {page.matched} matching")


def _progress_bar(label: str) -> tuple[Progress, Callable[[PassCounts], None]]:
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replayed {task.fields[replayed]} kept {task.fields[kept]}"),
        TimeRemainingColumn(),
        console=errors,
    )
    task = progress.add_task(label, total=None, replayed=0, kept=0)

    def update(counts: PassCounts) -> None:
        done = counts.replayed + counts.kept + counts.dropped
        progress.update(
            task, total=counts.total, completed=done, replayed=counts.replayed, kept=counts.kept
        )

    return progress, update


@app.command(short_help="Send picked messages of QUEUE back to their origin queue.")
def replay(
    queue: QueueArg,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="replay at most this many")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.1, metavar="PER_SECOND", help="messages per second")
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
    yes: YesOpt = False,
) -> None:
    """Send the picked messages of QUEUE back to their origin queue, attempts reset."""
    selection = _filter(type_, reason, message_id, since, until)
    _check(queue)
    route = ReplayTarget.EXCHANGE if via_exchange else ReplayTarget.QUEUE
    if not dry_run and not yes:
        what = "every message" if selection.is_empty else "the matching messages"
        where = "their original exchange" if via_exchange else "their origin queue"
        typer.confirm(f"Replay {what} of {queue} to {where}?", abort=True)
    progress, update = _progress_bar("dry run" if dry_run else "replay")
    with progress:
        outcome = _run(
            lambda office: office.replay(
                queue,
                selection,
                limit=limit,
                rate=rate,
                dry_run=dry_run,
                on_progress=update,
                route=route,
            )
        )
    if dry_run:
        console.print(f"dry run: {outcome.matched} would be replayed; nothing changed")
    else:
        console.print(f"matched {outcome.matched}, replayed {outcome.replayed}")


@app.command(short_help="Delete picked messages of QUEUE for good.")
def purge(
    queue: QueueArg,
    type_: TypeOpt = None,
    reason: ReasonOpt = None,
    message_id: IdsOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    yes: YesOpt = False,
) -> None:
    """Delete the picked messages of QUEUE for good (every message if no filter is given)."""
    selection = _filter(type_, reason, message_id, since, until)
    _check(queue)
    if not yes:
        what = "EVERY message" if selection.is_empty else "the matching messages"
        typer.confirm(f"Delete {what} of {queue} for good?", abort=True)
    dropped = _run(lambda office: office.drop(queue, selection))
    console.print(f"deleted {dropped}")


def main() -> None:
    app()
