"""What the calendar's use cases refuse, as exceptions; the API maps each to one status.

The use cases know nothing of HTTP: they raise these, and ``api/errors.py``
answers with the status in its one table (and a test checks that every class
below has a row there)::

    CalendarError
    ├── Unauthenticated              401  with WWW-Authenticate: Bearer
    │   ├── AccountGone                   a valid token whose account was deleted
    │   └── WrongCredentials              a sign-in with an unknown email or a wrong password
    ├── NotYours                     403  someone else's event, RSVP or announcement
    ├── NotFound(what)               404  an event, RSVP, announcement, subscription
    │   └── NothingToCancel          404  no active RSVP to withdraw
    ├── Conflict                     409
    │   ├── EventFull                     the seats asked for are taken (at COMMIT)
    │   ├── CapacityBelowSeatsTaken       an event shrunk below its seats taken
    │   ├── EmailTaken                    registering an address twice
    │   └── TooManySubscriptions          past PUSH_SUBSCRIPTIONS_PER_USER push subscriptions
    ├── Unprocessable                422
    │   ├── IdempotencyKeyReused          the same key with a different request
    │   └── EndsBeforeStart               an event changed to end before it starts
    ├── RateLimited(retry_after_s)   429  with Retry-After
    ├── LimiterUnavailable           503  Redis could not be asked (limits fail closed)
    └── Overloaded(reason)           503  too busy to take it now (``reason``); Retry-After
        └── DatabaseUnavailable      503  PostgreSQL unreachable (stopped, restarting, cut off)

The message of each error is the ``detail`` the client reads.
"""

from __future__ import annotations

from typing import Literal


class CalendarError(Exception):
    """A request that the calendar's rules refuse; its message is shown to the client."""


class Unauthenticated(CalendarError):
    """The caller could not be told apart from anyone else."""


class AccountGone(Unauthenticated):
    """A valid token whose account was deleted."""

    def __init__(self) -> None:
        super().__init__("the account of this token no longer exists")


class WrongCredentials(Unauthenticated):
    """One message for an unknown email and a wrong password: accounts are not revealed."""

    def __init__(self) -> None:
        super().__init__("incorrect email or password")


class NotYours(CalendarError):
    """The caller may not do this to someone else's event or RSVP."""


class NotFound(CalendarError):
    """The event, RSVP, announcement or subscription named does not exist."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class NothingToCancel(NotFound):
    """The caller has no active RSVP to withdraw."""

    def __init__(self) -> None:
        CalendarError.__init__(self, "you have no active RSVP for this event")


class Conflict(CalendarError):
    """The request contradicts what is stored."""


class EventFull(Conflict):
    """The seats an answer asks for are no longer free; known only when it commits."""

    def __init__(self) -> None:
        super().__init__("event is full")


class CapacityBelowSeatsTaken(Conflict):
    """An organizer tried to shrink an event below the seats already taken."""

    def __init__(self) -> None:
        super().__init__("capacity cannot be lower than the seats already taken")


class EmailTaken(Conflict):
    """The address is registered already."""

    def __init__(self) -> None:
        super().__init__("email is already registered")


class TooManySubscriptions(Conflict):
    """A user holds as many push subscriptions as allowed: each costs a push per notification."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"at most {limit} push subscriptions per user; remove one you no longer use"
        )


class Unprocessable(CalendarError):
    """Well-formed input that the rules refuse."""


class IdempotencyKeyReused(Unprocessable):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self) -> None:
        super().__init__("Idempotency-Key was already used with a different request")


class EndsBeforeStart(Unprocessable):
    """An event would end before it starts."""

    def __init__(self) -> None:
        super().__init__("ends_at must not be before starts_at")


class RateLimited(CalendarError):
    """Used too often; ``retry_after_s`` says when the window has room again."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class LimiterUnavailable(CalendarError):
    """Redis could not be asked; a limit that vanished with its store would let bursts through."""

    def __init__(self) -> None:
        super().__init__("rate limiter unavailable, try again")


#: Why a request was shed (``http_requests_shed_total{reason}``): more requests in
#: flight than ``MAX_REQUESTS_IN_FLIGHT``; no database connection free within
#: ``DB_POOL_TIMEOUT_S``; no password-hash slot free; or the request had been in
#: flight longer than ``DB_POOL_TIMEOUT_S`` before it reached the database.
ShedReason = Literal["in_flight", "pool", "password_hash", "late"]


class Overloaded(CalendarError):
    """Too busy to take the request now: refuse quickly rather than queue without end."""

    #: seconds a client should wait before trying again
    retry_after_s = 1

    def __init__(self, reason: ShedReason = "pool") -> None:
        super().__init__("the service is busy, try again shortly")
        #: what ran out; None when nothing did (the database is away, see below)
        self.reason: ShedReason | None = reason


class DatabaseUnavailable(Overloaded):
    """PostgreSQL could not be reached: nothing was done, the client may simply try again."""

    #: a restart or failover takes a few seconds
    retry_after_s = 2

    def __init__(self) -> None:
        CalendarError.__init__(self, "the database is unavailable, try again shortly")
        self.reason = None  # not shedding: no work could be done at all
