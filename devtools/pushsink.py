"""`python -m devtools.pushsink`: a Web Push service for development and tests.

It does what a browser vendor's push service does with a push, and checks it
as strictly: the ``Authorization: vapid t=…, k=…`` JWT is verified (ES256
signature with the ``k`` key, ``aud`` = this service's origin, ``exp`` at
most 24 hours ahead, a ``sub`` contact), ``TTL`` must be there, and the
``aes128gcm`` body is decrypted with the subscription's private key
(``http_ece``), as the browser would. What arrives is kept in memory.

    POST /subscriptions          a new subscription: {endpoint, keys: {p256dh, auth}},
                                 ready for POST /users/me/push-subscriptions
    POST /push/{id}              the push endpoint itself (201, or a scripted answer)
    GET  /pushes                 what arrived, decrypted (?subscription=id to filter)

`make run` starts it (port ``PUSH_SINK_PORT``, default 8090) and logs each
push; with ``PUSH_SINK_ARRIVALS`` set to a file, it also appends one JSON line
per delivered push there (``{"at": unix time, "subscription_id": ...}``), which
is how the end-to-end benchmark (``bench.b2_end_to_end``) times pushes; the
tests run the same :class:`PushSink` in-process
(``tests/support/push_service.py``) and script failures with
:meth:`PushSink.answer_next`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import http_ece
import jwt
import orjson
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("pushsink")

#: RFC 8292 §2: a token must not expire more than 24 hours after the request.
MAX_TOKEN_LIFETIME_S = 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SinkSubscription:
    """A subscription as a browser holds it: the private half stays here."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @property
    def keys(self) -> dict[str, str]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": _b64(public), "auth": _b64(self.auth_secret)}

    def as_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives a web page."""
        return {"endpoint": self.endpoint, "keys": self.keys}


@dataclass(frozen=True)
class ReceivedPush:
    subscription_id: str
    payload: bytes  #: the decrypted body
    ttl: int
    urgency: str | None
    topic: str | None
    claims: dict[str, Any]  #: the verified VAPID JWT claims
    vapid_key: str  #: the ``k`` of the Authorization header
    received_at: float  #: time.monotonic() on arrival

    @property
    def notification(self) -> Any:
        return orjson.loads(self.payload)

    def as_json(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "notification": self.notification,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "claims": self.claims,
        }


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class PushSink:
    """The push service's state: subscriptions, scripted answers, what arrived."""

    origin: str  #: scheme://host:port this service is reached at (the VAPID audience)
    subscriptions: dict[str, SinkSubscription] = field(default_factory=dict)
    received: list[ReceivedPush] = field(default_factory=list)
    #: every push that reached an endpoint: (subscription id, status answered, monotonic time)
    attempts: list[tuple[str, int, float]] = field(default_factory=list)
    #: called with each delivered push (the benchmark records arrival times through it)
    on_arrival: Callable[[ReceivedPush], None] | None = None
    _answers: dict[str, deque[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def subscribe(self) -> SinkSubscription:
        sub_id = uuid.uuid4().hex
        subscription = SinkSubscription(
            id=sub_id,
            endpoint=f"{self.origin}/push/{sub_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
        )
        self.subscriptions[sub_id] = subscription
        return subscription

    def answer_next(self, subscription: SinkSubscription, status: int, **headers: str) -> None:
        """Answer the next push to ``subscription`` with ``status`` instead of 201 (queued)."""
        self._answers.setdefault(subscription.id, deque()).append((status, headers))

    def pushes_to(self, subscription: SinkSubscription) -> list[ReceivedPush]:
        return [p for p in self.received if p.subscription_id == subscription.id]

    async def wait_for(self, count: int, within_s: float = 10.0) -> list[ReceivedPush]:
        """Wait until ``count`` pushes have been delivered; returns them all."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), within_s
            )
        return list(self.received)

    async def receive(self, sub_id: str, headers: dict[str, str], body: bytes) -> Response:
        subscription = self.subscriptions.get(sub_id)
        if subscription is None:
            return _error(404, "no such subscription")
        try:
            push = self._verify_and_decrypt(subscription, headers, body)
        except Refused as refused:
            log.warning("push to %s refused: %s", sub_id, refused.detail)
            self.attempts.append((sub_id, refused.status, time.monotonic()))
            return _error(refused.status, refused.detail)
        answers = self._answers.get(sub_id)
        if answers:
            status, extra = answers.popleft()
            self.attempts.append((sub_id, status, time.monotonic()))
            return Response(status_code=status, headers=extra)
        self.attempts.append((sub_id, 201, time.monotonic()))
        async with self._arrived:
            self.received.append(push)
            self._arrived.notify_all()
        if self.on_arrival is not None:
            self.on_arrival(push)
        log.info("push to %s: %s", sub_id, push.payload.decode(errors="replace"))
        return Response(status_code=201, headers={"Location": f"{self.origin}/messages/{sub_id}"})

    def _verify_and_decrypt(
        self, subscription: SinkSubscription, headers: dict[str, str], body: bytes
    ) -> ReceivedPush:
        claims, vapid_key = self._verify_vapid(headers.get("authorization", ""))
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            raise Refused(400, "TTL header missing or not a number")
        if headers.get("content-encoding") != "aes128gcm":
            raise Refused(415, "Content-Encoding must be aes128gcm")
        try:
            payload: bytes = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except Exception as exc:  # http_ece raises several types for a bad body
            raise Refused(400, f"cannot decrypt: {exc!r}") from exc
        return ReceivedPush(
            subscription_id=subscription.id,
            payload=payload,
            ttl=int(ttl),
            urgency=headers.get("urgency"),
            topic=headers.get("topic"),
            claims=claims,
            vapid_key=vapid_key,
            received_at=time.monotonic(),
        )

    def _verify_vapid(self, authorization: str) -> tuple[dict[str, Any], str]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Refused(401, "Authorization must use the vapid scheme (RFC 8292)")
        fields: dict[str, str] = {}
        for param in params.split(","):
            name, _, value = param.strip().partition("=")
            fields[name] = value
        token, key_text = fields.get("t", ""), fields.get("k", "")
        try:
            point = base64.urlsafe_b64decode(key_text + "=" * (-len(key_text) % 4))
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=public_key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except (ValueError, jwt.PyJWTError) as exc:
            raise Refused(403, f"VAPID token refused: {exc}") from exc
        if claims["exp"] > time.time() + MAX_TOKEN_LIFETIME_S:
            raise Refused(403, "VAPID token expires more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise Refused(403, "VAPID sub must be a mailto: or https: contact")
        return claims, key_text


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(sink: PushSink) -> Starlette:
    async def new_subscription(request: Request) -> JSONResponse:
        subscription = sink.subscribe()
        return JSONResponse({"id": subscription.id, **subscription.as_json()}, status_code=201)

    async def push(request: Request) -> Response:
        return await sink.receive(
            request.path_params["sub_id"], dict(request.headers), await request.body()
        )

    async def pushes(request: Request) -> JSONResponse:
        wanted = request.query_params.get("subscription")
        return JSONResponse(
            [p.as_json() for p in sink.received if wanted in (None, p.subscription_id)]
        )

    return Starlette(
        routes=[
            Route("/subscriptions", new_subscription, methods=["POST"]),
            Route("/push/{sub_id}", push, methods=["POST"]),
            Route("/pushes", pushes, methods=["GET"]),
        ]
    )


def server(sink: PushSink, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``sink``, to ``await server.serve()`` in a running loop."""
    config = uvicorn.Config(
        create_app(sink), host=host, port=port, log_level="warning", lifespan="off"
    )
    return uvicorn.Server(config)


def arrival_recorder(stream: IO[str]) -> Callable[[ReceivedPush], None]:
    """Append ``{"at", "subscription_id"}`` per push to ``stream``, one JSON line each."""

    def record(push: ReceivedPush) -> None:
        stream.write(
            orjson.dumps({"at": time.time(), "subscription_id": push.subscription_id}).decode()
            + "\n"
        )
        stream.flush()

    return record


def main() -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)-5s %(message)s")
    host, port = "127.0.0.1", int(os.environ.get("PUSH_SINK_PORT", "8090"))
    sink = PushSink(origin=f"http://{host}:{port}")
    if arrivals := os.environ.get("PUSH_SINK_ARRIVALS"):
        sink.on_arrival = arrival_recorder(open(arrivals, "a"))  # noqa: SIM115 - open for life
        log.setLevel(logging.WARNING)  # the file says what arrived; a log line each is noise
    log.info("development push service on %s (POST /subscriptions for a subscription)", sink.origin)
    server(sink, host, port).run()


if __name__ == "__main__":
    main()
