"""Which addresses a push may go to (prod), and that the send side connects only to checked ones.

No traffic leaves this machine: forbidden addresses are refused before any
connection, and the public ones are "connected" through a socket factory
that records the address and refuses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_consumer.push_http import AddrInfo, PooledPoster
from push_consumer.vapid import VapidAuthorizations, b64url_encode, generate_private_key
from push_consumer.webpush import ForbiddenEndpoint, PushTarget, SubscriptionGone, WebPushSender
from shared.messaging.errors import TransientError
from shared.outbound_addresses import ForbiddenAddress, public_addresses, refusal

REFUSED = [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("172.16.5.4", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fc00::1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("169.254.170.2", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("100.100.100.200", "a cloud metadata address"),
    ("168.63.129.16", "a cloud metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("240.0.0.1", "a private address"),  # reserved, and Python files it under private too
    ("100.64.0.1", "not a public address"),  # carrier-grade NAT
    ("::ffff:10.0.0.1", "a private address"),  # IPv4-mapped: judged as 10.0.0.1
    ("::ffff:127.0.0.1", "a loopback address"),
    ("::ffff:169.254.169.254", "a cloud metadata address"),
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_internal_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


class RecordingSockets:
    """Stands in for the network: records where a socket would connect, connects nowhere."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    def __call__(self, addr_info: AddrInfo) -> socket.socket:
        host, port = addr_info[4][:2]
        self.connected.append((host, port))
        raise ConnectionRefusedError("the test network connects nowhere")


class Lookups:
    """Answers every name with the next list of ``answers`` (the last one over and over).

    A rebinding DNS server is one whose answers change between lookups.
    """

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.count = 0

    async def getaddrinfo(self, host: str, port: int, **_: object) -> list[tuple[typing.Any, ...]]:
        addresses = self._answers[min(self.count, len(self._answers) - 1)]
        self.count += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


def resolving_to(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> Lookups:
    """Make every name resolve through :class:`Lookups` of ``answers``."""
    lookups = Lookups(*answers)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", lookups.getaddrinfo)
    return lookups


def a_target(endpoint: str) -> PushTarget:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return PushTarget(uuid.uuid4(), endpoint, b64url_encode(point), b64url_encode(bytes(16)))


def prod_sender(sockets: RecordingSockets) -> WebPushSender:
    """The sender as APP_ENV=prod builds it, on a network that records and refuses."""
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com")
    poster = PooledPoster(max_connections=2, public_only=True, socket_factory=sockets)
    return WebPushSender(vapid, timeout_s=5.0, poster=poster)


async def test_localhost_is_refused_after_resolution() -> None:
    with pytest.raises(ForbiddenAddress, match=r"localhost .* loopback"):
        await public_addresses("localhost", 443)


async def test_one_internal_address_among_public_ones_refuses_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving_to(monkeypatch, ["93.184.216.34", "10.0.0.1"])
    sockets = RecordingSockets()
    sender = prod_sender(sockets)
    try:
        with pytest.raises(ForbiddenEndpoint, match=r"10\.0\.0\.1"):
            await sender.send(a_target("https://push.example.net/p/1"), b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert sockets.connected == []


async def test_the_connection_goes_to_the_checked_address_not_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the first lookup is public, every later one loopback: a rebinding DNS server
    lookups = resolving_to(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    sockets = RecordingSockets()
    sender = prod_sender(sockets)
    try:
        with pytest.raises(TransientError) as unreachable:
            await sender.send(a_target("https://push.example.net/p/1"), b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert unreachable.value.reason == "push_unreachable"
    assert sockets.connected == [("93.184.216.34", 443)]
    assert lookups.count == 1  # no second lookup for a rebinding server to answer


async def test_each_new_connection_looks_the_name_up_and_checks_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving_to(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    sockets = RecordingSockets()
    sender = prod_sender(sockets)
    target = a_target("https://push.example.net/p/1")
    try:
        with pytest.raises(TransientError):
            await sender.send(target, b"{}", ttl_s=60)
        with pytest.raises(ForbiddenEndpoint, match=r"127\.0\.0\.1"):
            await sender.send(target, b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert sockets.connected == [("93.184.216.34", 443)]


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9/push",
        "https://10.0.0.1/push",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8080/push",
        "https://localhost/push",
    ],
)
async def test_a_prod_sender_treats_an_internal_endpoint_as_gone_without_connecting(
    endpoint: str,
) -> None:
    sockets = RecordingSockets()
    sender = prod_sender(sockets)
    try:
        with pytest.raises(ForbiddenEndpoint) as refused:
            await sender.send(a_target(endpoint), b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert isinstance(refused.value, SubscriptionGone)
    assert refused.value.reason == "forbidden_endpoint"
    assert refused.value.status_code == 410
    assert sockets.connected == []


async def test_a_prod_sender_connects_to_a_public_literal_address() -> None:
    sockets = RecordingSockets()
    sender = prod_sender(sockets)
    try:
        with pytest.raises(TransientError):
            await sender.send(a_target("https://93.184.216.34/p/1"), b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert sockets.connected == [("93.184.216.34", 443)]
