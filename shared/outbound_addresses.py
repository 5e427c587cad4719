"""Which network addresses this system may open a connection to on a user's say-so.

A push endpoint is a URL a browser (so: anyone with an account) hands us,
and the push consumer posts to it. Unchecked, that is a request forgery
tool: a subscription to ``http://169.254.169.254/...`` or ``10.0.0.1`` makes
our servers talk to the cloud metadata service or the internal network.
So in prod an endpoint must be a public address, checked twice:

- when it is subscribed (the calendar API, a clear 422), and
- when a push is sent, *after* resolving its name, on every address the
  name resolves to; the connection then goes to the address that was
  checked, so a name that resolves to a public address for the first
  lookup and to a private one for the second (DNS rebinding) gets nowhere.

Outside prod everything is allowed: the dev push service listens on
127.0.0.1 and compose's services have private addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud instance metadata services; some are not in any special-purpose range.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
    )
)


class ForbiddenAddress(ValueError):
    """A host that is, or resolves to, an address outbound requests must not reach."""


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or None when it is one.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is judged as the IPv4
    address it reaches.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        # what is left and still not global: shared address space (100.64/10), ...
        (not address.is_global, "not a public address"),
    )
    return next((why for refused, why in checks if refused), None)


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one (IPv6 with or without brackets), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_address(host: str, address: IPAddress) -> None:
    """Raise :class:`ForbiddenAddress` when ``address`` (of ``host``) is not public."""
    why = refusal(address)
    if why is not None:
        shown = host if host == str(address) else f"{host} ({address})"
        raise ForbiddenAddress(f"{shown} is {why}")


async def public_addresses(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to; :class:`ForbiddenAddress` if one is not public.

    One forbidden address refuses the name, even if others are public: the
    connecting side may pick any of them. ``socket.gaierror`` (an OSError)
    passes through when the name does not resolve.
    """
    literal = literal_address(host)
    if literal is not None:
        check_address(host, literal)
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        check_address(host, address)
    return addresses
