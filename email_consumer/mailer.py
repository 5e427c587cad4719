"""The door to the mail server: the ``Mailer`` port and its SMTP adapter.

Unit tests use the recording fake in ``tests/fakes/senders.py``.

``SmtpMailer`` keeps a small pool of aiosmtplib connections open and reuses
them, so a send costs one SMTP transaction, not a TCP (and TLS) handshake.
Errors are mapped here, at the edge, so nothing above sees aiosmtplib:

=====================================================  ==========  ====================
aiosmtplib / OS error                                   becomes     reason
=====================================================  ==========  ====================
OSError (refused, reset, unreachable), TimeoutError     Transient   ``smtp_unavailable``
SMTPConnectError, SMTPConnectTimeoutError,              Transient   ``smtp_unavailable``
SMTPServerDisconnected, SMTPTimeoutError,
SMTPReadTimeoutError
SMTPConnectResponseError, SMTPHeloError (any code)      Transient   ``smtp_unavailable``
SMTPAuthenticationError (any code)                      Transient   ``smtp_auth_failed``
SMTPRecipientRefused / SMTPRecipientsRefused, all 4xx   Transient   ``smtp_4xx``
SMTPRecipientRefused / SMTPRecipientsRefused, any 5xx   Permanent   ``invalid_recipient``
SMTPSenderRefused, SMTPDataError, other                 Transient   ``smtp_4xx``
SMTPResponseException with 4xx
... the same with 5xx                                   Permanent   ``smtp_rejected``
... with a code outside 4xx/5xx (garbled reply)         Transient   ``smtp_protocol``
SMTPNotSupported (SMTPUTF8 or STARTTLS missing)         Permanent   ``smtp_unsupported``
ValueError (address aiosmtplib cannot send)             Permanent   ``invalid_recipient``
SMTPException (anything else)                           Transient   ``smtp_error``
=====================================================  ==========  ====================

A failure after the message went out with ``DATA`` (the connection dropped,
no reply within ``SMTP_TIMEOUT_S``) is different: the server may have taken
the mail, and no client can tell. Sending it again could deliver it twice, so
it is neither resent here nor retried: it becomes ``OutcomeUnknown``
(Permanent, reason ``smtp_outcome_unknown``), dead-lettered with the
``Message-ID`` for an operator to look up in the mail server's log and replay
if it never arrived. A pooled connection found dropped *before* ``DATA`` is
reconnected once and the mail sent on the new one: nothing had gone out.

Connect-time failures (greeting, HELO, AUTH) stay transient whatever their
code: they say nothing about the message, which should wait for the server
or its configuration to be fixed; after the retry limit it is dead-lettered
with the reason above and can be replayed by it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPConnectTimeoutError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPNotSupported,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from shared.messaging.errors import MessagingError, PermanentError, TransientError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One email ready for the wire: SMTP envelope plus the RFC 5322 bytes."""

    sender: str  #: envelope sender (MAIL FROM), a bare address
    recipients: tuple[str, ...]  #: envelope recipients (RCPT TO), bare addresses
    message: bytes  #: the whole message, 7-bit clean, CRLF line endings
    message_id: str  #: its ``Message-ID`` header, with the angle brackets


class OutcomeUnknown(PermanentError):
    """The connection failed after the message was sent with DATA: it may have arrived."""

    reason = "smtp_outcome_unknown"


class _AfterData(Exception):
    """A connection failure once DATA began, carrying it (never leaves this module)."""

    def __init__(self, cause: SMTPException | OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Mailer(Protocol):
    async def send(self, email: OutgoingEmail) -> str:
        """Hand ``email`` to the mail server; return its reply (often a queue id).

        Raises TransientError or PermanentError, never a library exception.
        """
        ...


class SmtpMailer:
    """Sends over up to ``pool_size`` reused SMTP connections, one send each at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
        pool_size: int = 1,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._pool_size = pool_size
        self._closed = False
        # LIFO: the connection used last is the one most likely still open.
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        for _ in range(pool_size):
            self._idle.put_nowait(
                aiosmtplib.SMTP(
                    hostname=host,
                    port=port,
                    username=username,
                    password=password,
                    start_tls=starttls,  # exactly as configured, never opportunistic
                    timeout=timeout,
                    tls_context=tls_context,
                )
            )

    async def send(self, email: OutgoingEmail) -> str:
        if self._closed:
            raise RuntimeError("SmtpMailer is closed")
        client = await self._idle.get()
        try:
            if self._closed:  # closed while this send waited for a connection
                raise RuntimeError("SmtpMailer is closed")
            return await self._send_on(client, email)
        except _AfterData as exc:
            client.close()
            raise OutcomeUnknown(
                f"{email.message_id} may have been delivered: {_describe(exc.cause)}"
            ) from exc.cause
        except (SMTPResponseException, SMTPRecipientsRefused, ValueError) as exc:
            # the server answered (and was sent RSET): the connection is reusable
            raise smtp_error(exc) from exc
        except (SMTPException, OSError) as exc:
            client.close()  # state unknown: the next send starts on a fresh connection
            raise smtp_error(exc) from exc
        except asyncio.CancelledError:
            client.close()
            raise
        finally:
            self._idle.put_nowait(client)

    async def _send_on(self, client: aiosmtplib.SMTP, email: OutgoingEmail) -> str:
        if client.is_connected:
            try:
                return await _transaction(client, email)
            except SMTPServerDisconnected:
                # A pooled connection the server dropped while idle (restart,
                # idle timeout), found before DATA: nothing went out, so
                # reconnect once and send. A drop after DATA is _AfterData.
                log.info("SMTP connection was dropped; reconnecting")
                client.close()
        await client.connect()
        return await _transaction(client, email)

    async def aclose(self) -> None:
        """Wait for sends in flight, then say QUIT on every open connection."""
        if self._closed:
            return
        self._closed = True
        clients = [await self._idle.get() for _ in range(self._pool_size)]
        for client in clients:
            if client.is_connected:
                with suppress(SMTPException, OSError):  # a goodbye is best effort
                    await client.quit()
            client.close()
        for client in clients:  # senders still waiting get one, see the flag and give up
            self._idle.put_nowait(client)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _transaction(client: aiosmtplib.SMTP, email: OutgoingEmail) -> str:
    """MAIL, RCPT and DATA, as ``sendmail`` does, telling a failure after DATA apart."""
    try:
        if client.is_ehlo_or_helo_needed:  # the extensions are known after EHLO
            await client.ehlo()
        size = client.supports_extension("size")
        await client.mail(email.sender, options=[f"size={len(email.message)}"] if size else [])
        refused = []
        for recipient in email.recipients:
            try:
                await client.rcpt(recipient)
            except SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(email.recipients):
            raise SMTPRecipientsRefused(refused)
        try:
            response = await client.data(email.message)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as exc:
            raise _AfterData(exc) from exc
    except (SMTPResponseException, SMTPRecipientsRefused):
        with suppress(SMTPException, OSError):  # reset the envelope for the next mail
            await client.rset()
        raise
    if refused:  # some recipients, not all: the mail went to the others
        log.warning("SMTP server refused some recipients: %s", refused)
    return response.message


# -- error mapping --------------------------------------------------------------

_Rule = Callable[[BaseException], MessagingError]


def _unavailable(exc: BaseException) -> MessagingError:
    return TransientError(_describe(exc), reason="smtp_unavailable")


def _auth_failed(exc: BaseException) -> MessagingError:
    return TransientError(_describe(exc), reason="smtp_auth_failed")


def _unsupported(exc: BaseException) -> MessagingError:
    return PermanentError(_describe(exc), reason="smtp_unsupported")


def _unknown(exc: BaseException) -> MessagingError:
    return TransientError(_describe(exc), reason="smtp_error")


def _bad_address(exc: BaseException) -> MessagingError:
    return PermanentError(_describe(exc), reason="invalid_recipient")


def _by_code(rejected: str) -> _Rule:
    def rule(exc: BaseException) -> MessagingError:
        code = exc.code if isinstance(exc, SMTPResponseException) else -1
        if 400 <= code < 500:
            return TransientError(_describe(exc), reason="smtp_4xx")
        if 500 <= code < 600:
            return PermanentError(_describe(exc), reason=rejected)
        return TransientError(_describe(exc), reason="smtp_protocol")

    return rule


def _recipients_refused(exc: BaseException) -> MessagingError:
    refusals = exc.recipients if isinstance(exc, SMTPRecipientsRefused) else []
    if refusals and all(400 <= r.code < 500 for r in refusals):
        return TransientError(_describe(exc), reason="smtp_4xx")
    return PermanentError(_describe(exc), reason="invalid_recipient")


#: Every aiosmtplib exception class by name (a test checks none is missing);
#: the most specific class of an exception's MRO wins.
RULES: dict[type[BaseException], _Rule] = {
    SMTPServerDisconnected: _unavailable,
    SMTPConnectError: _unavailable,
    SMTPConnectTimeoutError: _unavailable,
    SMTPConnectResponseError: _unavailable,
    SMTPTimeoutError: _unavailable,
    SMTPReadTimeoutError: _unavailable,
    SMTPHeloError: _unavailable,
    SMTPAuthenticationError: _auth_failed,
    SMTPRecipientRefused: _by_code("invalid_recipient"),
    SMTPRecipientsRefused: _recipients_refused,
    SMTPSenderRefused: _by_code("smtp_rejected"),
    SMTPDataError: _by_code("smtp_rejected"),
    SMTPResponseException: _by_code("smtp_rejected"),
    SMTPNotSupported: _unsupported,
    SMTPException: _unknown,
    OSError: _unavailable,  # ConnectionRefusedError, ConnectionResetError, TimeoutError, ...
    ValueError: _bad_address,
}


def smtp_error(exc: BaseException) -> MessagingError:
    """The TransientError or PermanentError an SMTP failure stands for."""
    for cls in type(exc).__mro__:
        rule = RULES.get(cls)
        if rule is not None:
            return rule(exc)
    return _unknown(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SMTPRecipientsRefused):
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return f"SMTPRecipientsRefused: {detail}"
    if isinstance(exc, SMTPResponseException):
        return f"{type(exc).__name__}: {exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"
