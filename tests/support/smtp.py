"""A real SMTP server for tests: aiosmtpd in its own thread, recording what arrives.

    with SmtpSink() as sink:                      # 127.0.0.1, a free port
        mailer = SmtpMailer(sink.host, sink.port)
        ...
        (mail,) = await sink.wait_for(1)
        assert mail.message["Subject"] == "..."

It can be told how to answer (``sink.reply_next("RCPT", "550 5.1.1 No such
user")`` for the next command, ``sink.refuse_recipient(address, reply)`` for
every mail to one address until ``sink.accept_recipient(address)``), started
later than built (``SmtpSink()`` picks its port at once, so a client can be
pointed at a server that is down), restarted on the same port
(``sink.restart()``: the connections clients hold go stale), run
``sink.after_data`` (in the server's thread) once a mail is recorded and
before it is answered, drop the connection instead of answering
(``sink.drop_after_data(1)``: the client cannot know the mail arrived), and
require STARTTLS and AUTH (``tls=`` a context from ``self_signed_tls``,
``credentials={"user": "secret"}``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Command = Literal["MAIL", "RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  #: the message as it came over the wire (dot-unstuffed)
    connection: int  #: serial number of the SMTP connection that carried it
    tls: bool  #: whether that connection had done STARTTLS
    login: str | None  #: the user it authenticated as, if it did

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class SmtpSink:
    """Starts on ``start()`` or ``with``; every test gets a fresh one."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._tls = tls
        self._credentials = dict(credentials) if credentials is not None else None
        self._lock = threading.Lock()
        self._received: list[ReceivedMail] = []
        self._replies: dict[str, deque[str]] = {c: deque() for c in ("MAIL", "RCPT", "DATA")}
        self._refused: dict[str, str] = {}
        self._connections = 0
        self._drops_after_data = 0
        self._controller: Controller | None = None
        #: Called in the server's thread with each mail recorded, before its answer.
        self.after_data: Callable[[ReceivedMail], None] | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        options: dict[str, Any] = {}
        if self._tls is not None:
            options.update(tls_context=self._tls, require_starttls=True)
        if self._credentials is not None:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self._tls is not None,
            )
        # a Controller cannot be started twice (its loop is closed on stop)
        self._controller = Controller(
            _Recorder(self),
            hostname=self.host,
            port=self.port,
            server_hostname="sink.test",  # no DNS lookup for the greeting
            ready_timeout=10.0,
            **options,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a crashed server would."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what happened -----------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """Connections that carried at least one MAIL FROM (readiness probes don't)."""
        with self._lock:
            return self._connections

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until ``count`` mails have arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(received := self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(received)} of {count} mails arrived in {timeout}s")
            await asyncio.sleep(0.02)
        return received

    # -- how to answer -----------------------------------------------------------

    def reply_next(self, command: Command, reply: str) -> None:
        """Answer the next ``command`` with ``reply`` (e.g. "451 4.3.0 Try later")."""
        with self._lock:
            self._replies[command].append(reply)

    def drop_after_data(self, count: int = 1) -> None:
        """Record the next ``count`` mails, then close their connections instead of a 250."""
        with self._lock:
            self._drops_after_data += count

    def _drop_this_one(self) -> bool:
        with self._lock:
            if self._drops_after_data:
                self._drops_after_data -= 1
                return True
            return False

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Answer every ``RCPT TO:<address>`` with ``reply``, whatever the order of mails."""
        with self._lock:
            self._refused[address.lower()] = reply

    def accept_recipient(self, address: str) -> None:
        """Take mails to ``address`` again (the mailbox a ``refuse_recipient`` closed)."""
        with self._lock:
            self._refused.pop(address.lower(), None)

    # -- called from the server's thread ---------------------------------------

    def _refusal_for(self, address: str) -> str | None:
        with self._lock:
            return self._refused.get(address.lower())

    def _scripted_reply(self, command: Command) -> str | None:
        with self._lock:
            queue = self._replies[command]
            return queue.popleft() if queue else None

    def _connection_of(self, session: Session) -> int:
        with self._lock:
            serial: int | None = getattr(session, "sink_connection", None)
            if serial is None:
                self._connections += 1
                serial = self._connections
                session.sink_connection = serial  # type: ignore[attr-defined]
            return serial

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._received.append(mail)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self._credentials is not None:
            login, password = data.login.decode(), data.password.decode()
            if self._credentials.get(login) == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


class _Recorder:
    """The aiosmtpd handler: scripted replies first, else accept and record."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._sink._connection_of(session)
        if (reply := self._sink._scripted_reply("MAIL")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (reply := self._sink._scripted_reply("RCPT")) is not None:
            return reply
        if (reply := self._sink._refusal_for(address)) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if (reply := self._sink._scripted_reply("DATA")) is not None:
            return reply
        connection = self._sink._connection_of(session)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            connection=connection,
            tls=session.ssl is not None,
            login=session.auth_data if session.authenticated else None,
        )
        self._sink._record(mail)
        if self._sink.after_data is not None:
            self._sink.after_data(mail)
        transport = server.transport
        if self._sink._drop_this_one() and isinstance(transport, asyncio.Transport):
            transport.abort()  # taken, but the client never hears so
        return f"250 2.0.0 OK: queued as sink-{connection}-{len(self._sink.received)}"


def self_signed_tls(
    directory: Path, host: str = "127.0.0.1"
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts around a throw-away certificate for ``host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key_file)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
