"""`python -m calendar_service.admin grant|revoke EMAIL`: the operator's way to make an admin.

In prod ``ADMIN_EMAILS`` is refused (registering proves no one owns an
address), so the first admin, and every later one, is granted here by someone
with access to the database. Exit codes: 0 done, 2 unknown email, 5 database
unreachable.
"""

from __future__ import annotations

import getpass
import sys

import typer
import uvloop

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import NotFound
from calendar_service.usecases.accounts import Role, change_role

app = typer.Typer(
    help="Grant or revoke the admin role of an account.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


async def _set_role(email: str, role: Role) -> None:
    engine = create_engine(Settings())
    try:
        async with UnitOfWork(engine) as uow:
            await change_role(uow, email=email, role=role, actor=f"cli:{getpass.getuser()}")
    finally:
        await engine.dispose()


def _run(email: str, role: Role) -> None:
    try:
        uvloop.run(_set_role(email, role))
    except NotFound:
        print(f"no account with the email {email!r}; it must register first", file=sys.stderr)
        raise typer.Exit(2) from None
    except (OSError, ConnectionError) as exc:
        print(f"cannot reach the database: {exc} (DATABASE_URL)", file=sys.stderr)
        raise typer.Exit(5) from None
    print(f"{email}: role is now {role}", file=sys.stderr)


@app.command()
def grant(email: str = typer.Argument(help="the account's email address")) -> None:
    """Make the account of EMAIL an admin; it takes effect on its next admin request."""
    _run(email, "admin")


@app.command()
def revoke(email: str = typer.Argument(help="the account's email address")) -> None:
    """Make the account of EMAIL a plain user; its admin requests are refused at once."""
    _run(email, "user")


if __name__ == "__main__":
    app()
