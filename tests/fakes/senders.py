"""Recording fakes of the consumers' outbound ports (``Mailer``, ``PushSender``) for unit tests.

Each records what it was asked to send and fails on request, so a test can
script a transient or permanent failure without a mail server or push service.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_consumer.mailer import OutgoingEmail
from push_consumer.webpush import PushTarget, Urgency
from shared.messaging.errors import MessagingError


class _FailsOnRequest:
    def __init__(self) -> None:
        self._failures: list[MessagingError] = []

    def fail_next(self, error: MessagingError) -> None:
        """Make the next send raise ``error`` (queued: call again for more)."""
        self._failures.append(error)

    def _raise_if_asked(self) -> None:
        if self._failures:
            raise self._failures.pop(0)


class RecordingMailer(_FailsOnRequest):
    """In-memory Mailer: records what was sent, fails on request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[OutgoingEmail] = []

    async def send(self, email: OutgoingEmail) -> str:
        self._raise_if_asked()
        self.sent.append(email)
        return f"2.0.0 OK: queued as recorded-{len(self.sent)}"


@dataclass(frozen=True)
class SentPush:
    target: PushTarget
    plaintext: bytes
    ttl_s: int
    urgency: Urgency
    topic: str | None


class RecordingPushSender(_FailsOnRequest):
    """In-memory PushSender: records each push, answers 201, fails on request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SentPush] = []

    async def send(
        self,
        target: PushTarget,
        plaintext: bytes,
        *,
        ttl_s: int,
        urgency: Urgency = "normal",
        topic: str | None = None,
    ) -> int:
        self._raise_if_asked()
        self.sent.append(SentPush(target, plaintext, ttl_s, urgency, topic))
        return 201
