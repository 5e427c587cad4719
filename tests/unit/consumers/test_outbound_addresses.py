"""Which addresses a push may go to (prod), and that the send side connects only to checked ones.

No traffic leaves this machine: forbidden addresses are refused before any
connection, and the public ones are "connected" through a fake backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
import uuid

import httpcore
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_consumer.vapid import VapidAuthorizations, b64url_encode, generate_private_key
from push_consumer.vetted_transport import PublicOnlyBackend, VettedHTTPTransport
from push_consumer.webpush import ForbiddenEndpoint, PushTarget, SubscriptionGone, WebPushSender
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


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the network: records where it was asked to connect, connects nowhere."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        raise httpcore.ConnectError("the test network connects nowhere")


def resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """Make every name resolve to ``addresses`` (as a rebinding DNS server would choose)."""

    async def getaddrinfo(host: str, port: int, **_: object) -> list[tuple[typing.Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


async def test_localhost_is_refused_after_resolution() -> None:
    with pytest.raises(ForbiddenAddress, match=r"localhost .* loopback"):
        await public_addresses("localhost", 443)


async def test_one_internal_address_among_public_ones_refuses_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving_to(monkeypatch, "93.184.216.34", "10.0.0.1")
    backend = RecordingBackend()
    with pytest.raises(ForbiddenAddress, match=r"10\.0\.0\.1"):
        await PublicOnlyBackend(backend).connect_tcp("push.example.net", 443)
    assert backend.connected == []


async def test_the_connection_goes_to_the_checked_address_not_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolving_to(monkeypatch, "93.184.216.34")
    backend = RecordingBackend()
    with pytest.raises(httpcore.ConnectError):
        await PublicOnlyBackend(backend).connect_tcp("push.example.net", 443)
    assert backend.connected == [("93.184.216.34", 443)]


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
    backend = RecordingBackend()
    transport = VettedHTTPTransport(
        limits=httpx.Limits(max_connections=2), network_backend=PublicOnlyBackend(backend)
    )
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com")
    sender = WebPushSender(vapid, transport=transport)
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    target = PushTarget(uuid.uuid4(), endpoint, b64url_encode(point), b64url_encode(bytes(16)))
    try:
        with pytest.raises(ForbiddenEndpoint) as refused:
            await sender.send(target, b"{}", ttl_s=60)
    finally:
        await sender.aclose()
    assert isinstance(refused.value, SubscriptionGone)
    assert refused.value.reason == "forbidden_endpoint"
    assert refused.value.status_code == 410
    assert backend.connected == []
