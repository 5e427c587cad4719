"""Which database errors mean "PostgreSQL was away": hold, write again, 503."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.service.database import PoolExhausted, database_unreachable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        PoolExhausted("no database connection free within 1.0 s"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError(
            "cannot call Connection.fetch(): connection has been released back to the pool"
        ),
        asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"),
    ],
    ids=type,
)
def test_the_server_or_the_connection_gone_is_unreachable(error: BaseException) -> None:
    assert database_unreachable(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.UndefinedTableError("relation does not exist"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("not a database error"),
    ],
    ids=type,
)
def test_an_answer_of_the_database_is_not(error: BaseException) -> None:
    assert not database_unreachable(error)


def test_what_sqlalchemy_wraps_is_judged_by_its_cause() -> None:
    def wrapped(cause: BaseException, kind: type[Exception]) -> Exception:
        error = kind("statement", {}, cause)
        error.__cause__ = cause
        return error

    assert database_unreachable(wrapped(asyncpg.AdminShutdownError("terminated"), OperationalError))
    assert not database_unreachable(
        wrapped(asyncpg.UniqueViolationError("duplicate"), IntegrityError)
    )
