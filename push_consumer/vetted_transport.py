"""An httpx transport that connects only to public addresses it has just checked (prod).

The check must sit where the connection is made: checking a name and then
letting httpx resolve it again would give a rebinding DNS server a second,
different answer. So the transport's network backend (httpcore's seam for
"open a TCP stream") resolves the name itself, refuses it if any address is
not public (:mod:`shared.outbound_addresses`), and connects to one of the
addresses it checked. TLS is unchanged: httpcore still sends the URL's host
name as SNI and checks the certificate against it, and the ``Host`` header is
the URL's, so a push service sees an ordinary request.

httpx 0.28's ``AsyncHTTPTransport`` takes no network backend, so
:class:`VettedHTTPTransport` replaces the connection pool that its
constructor built with one that has the same limits and the vetting
backend: the one private attribute touched, covered by the tests.
"""

from __future__ import annotations

import ssl
import typing

import httpcore
import httpx

from shared.outbound_addresses import public_addresses

SocketOption = typing.Any  # httpcore's SOCKET_OPTION union, which it does not export


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP streams to public addresses only; the rest of the backend is ``inner``'s."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to the first checked address of ``host`` that answers.

        Raises :class:`~shared.outbound_addresses.ForbiddenAddress` before any
        connection is tried when one of the addresses is not public.
        """
        try:
            addresses = await public_addresses(host, port)
        except OSError as exc:  # the name does not resolve: as httpx says it
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # public_addresses returns at least one address or raises
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: typing.Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("push endpoints are TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class VettedHTTPTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections go only to checked public addresses."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network_backend or PublicOnlyBackend(),
        )
