"""One POST to a push service over pooled aiohttp connections, and the start of its answer.

Why aiohttp and not httpx: a push is a small POST whose answer we barely
read, and the HTTP client was the largest share of the push consumer's CPU
(issue "Cost per RSVP"). httpcore writes headers and body in two socket
writes through anyio's stream layer, parses the answer with h11 in Python,
and does pool bookkeeping per request: about 0.75 ms of CPU per push on the
development machine, against about 0.15 ms for aiohttp (one write for a
small request, a C parser).

Outbound safety. Only the first ``MAX_ANSWER_BYTES`` of an answer are read;
an answer cut there closes its connection instead of draining it. With
``public_only`` (APP_ENV=prod) a connection goes only to a public address
that was checked after DNS resolution (:mod:`shared.outbound_addresses`),
and the check sits where aiohttp turns a host into addresses, so a
rebinding DNS server gets no second lookup to answer differently:

- :class:`PublicOnlyResolver` resolves a name itself and refuses it when
  any of its addresses is not public; aiohttp connects to the addresses it
  returned, not to the name (no DNS cache: each new connection looks up);
- :func:`public_sockets`, aiohttp's socket factory, checks the address of
  every socket before it connects. aiohttp never resolves an IP literal
  (``https://10.0.0.1/``), so this is where those are refused; for names it
  is a second look at the address the resolver already passed.

TLS is aiohttp's default: certificates verified against the URL's host
name, which is also the SNI and the ``Host`` header. The total deadline of
a push is the sender's (:class:`push_consumer.webpush.WebPushSender`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.outbound_addresses import check_address, public_addresses

#: The most of a push service's answer body that is read (an error text, at most).
MAX_ANSWER_BYTES = 4096

#: What aiohttp passes a socket factory: (family, type, proto, canonname, sockaddr).
AddrInfo = tuple[Any, Any, int, str, tuple[Any, ...]]
SocketFactory = Callable[[AddrInfo], socket.socket]


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What a push service answered: its status, Retry-After and the start of its body."""

    status_code: int
    retry_after: str | None
    excerpt: bytes


class Poster(Protocol):
    """How the sender's POST reaches a push service; :class:`PooledPoster` is the real one."""

    async def post(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> PushAnswer:
        """POST ``body`` to ``endpoint``; aiohttp's errors and ForbiddenAddress pass through."""
        ...

    async def aclose(self) -> None: ...


class PublicOnlyResolver(AbstractResolver):
    """Resolves a name to its addresses, refusing it if any is not public (ForbiddenAddress)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # socket.gaierror (an OSError) passes through: aiohttp reports it as a DNS error
        addresses = await public_addresses(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


def plain_socket(addr_info: AddrInfo) -> socket.socket:
    """A socket for ``addr_info``, as aiohttp makes one without a factory."""
    family, kind, proto, _, _ = addr_info
    return socket.socket(family, kind, proto)


def public_sockets(open_socket: SocketFactory = plain_socket) -> SocketFactory:
    """A socket factory that refuses an address that is not public, then ``open_socket``s."""

    def open_public_socket(addr_info: AddrInfo) -> socket.socket:
        host = str(addr_info[4][0])
        check_address(host, ipaddress.ip_address(host))
        return open_socket(addr_info)

    return open_public_socket


class PooledPoster:
    """POSTs over one aiohttp session: at most ``max_connections`` kept open, in all.

    ``socket_factory`` is for tests (to see where a connection would go
    without making it); with ``public_only`` the address checks come before
    it. Build the poster inside the event loop that uses it.
    """

    def __init__(
        self,
        *,
        max_connections: int = 32,
        public_only: bool = False,
        socket_factory: SocketFactory | None = None,
    ) -> None:
        if public_only:
            connector = aiohttp.TCPConnector(
                limit=max_connections,
                resolver=PublicOnlyResolver(),
                use_dns_cache=False,
                socket_factory=public_sockets(socket_factory or plain_socket),
            )
        else:
            connector = aiohttp.TCPConnector(limit=max_connections, socket_factory=socket_factory)
        self._session = aiohttp.ClientSession(
            connector=connector,
            # one deadline, the sender's, around the whole push; none of aiohttp's
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
            # only what a push needs on the wire: no User-Agent or Accept, and no
            # Accept-Encoding (an answer is read raw, never decompressed)
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def post(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> PushAnswer:
        """One POST and at most ``MAX_ANSWER_BYTES`` of its answer.

        A connection whose answer has arrived whole goes back to the pool;
        one whose answer is cut while still arriving is closed, not drained.
        """
        response = await self._session.post(
            endpoint, data=body, headers=headers, allow_redirects=False
        )
        try:
            excerpt = bytearray()
            content = response.content
            while len(excerpt) < MAX_ANSWER_BYTES and not content.at_eof():
                chunk = await content.read(MAX_ANSWER_BYTES - len(excerpt))
                if not chunk:
                    break
                excerpt += chunk
            if not content.at_eof():
                response.close()
            return PushAnswer(response.status, response.headers.get("Retry-After"), bytes(excerpt))
        finally:
            response.release()
