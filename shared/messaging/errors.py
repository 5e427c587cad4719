"""How a handler says what went wrong; the runtime decides ack, retry or dead-letter.

    MessagingError
    ├── TransientError          try again later (connection lost, SMTP 4xx, push 429/5xx)
    │                           retried with growing delays, then dead-lettered
    ├── PermanentError          will never succeed (SMTP 5xx, bad recipient, push 400/413)
    │   └── InvalidMessageError the body is not a valid envelope: never reaches a handler
    └── NotAttempted            what the work needs first (the inbox, a store) was away:
                                the delivery is held and tried again, no attempt counted

Adapters map their library's exceptions onto these at the edge, with
``raise TransientError(...) from exc``, so handlers and the runtime never see
aiosmtplib, httpx or asyncpg exceptions.
"""

from __future__ import annotations


class MessagingError(Exception):
    """Base of every failure a handler may report."""

    #: Short machine-friendly reason, carried in ``x-fault-reason``.
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientError(MessagingError):
    """Worth another attempt later; ``retry_after`` (seconds) is a floor for the delay."""

    reason = "transient"

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class PermanentError(MessagingError):
    """Will fail the same way every time; dead-letter without retrying."""

    reason = "permanent"


class InvalidMessageError(PermanentError):
    """The body is not JSON or not a valid envelope of a known type."""

    reason = "invalid_message"


class NotAttempted(MessagingError):
    """Something the work needs before it starts could not be reached; nothing was done.

    The inbox's database was away when the message was claimed, or a store
    the handler reads before sending. The message has not failed: the
    runtime keeps the delivery, tries again after a pause, and its retry
    tiers (the attempt count) are left untouched.
    """

    reason = "not_attempted"
