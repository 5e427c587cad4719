"""A small async client for the RabbitMQ management HTTP API.

Used for what AMQP cannot do: loading definitions, queue depths for the
admin pages and readiness, and throw-away vhosts in tests. Credentials come
from the URL (``http://user:password@host:15672``); a comma-separated list
names several nodes of a cluster.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from shared.settings import split_url_list


class ManagementError(RuntimeError):
    """The management API refused a request or could not be reached."""


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    parts = urlsplit(url)
    auth = None
    if parts.username:
        auth = httpx.BasicAuth(parts.username, parts.password or "")
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), auth


class ManagementClient:
    """The management API of one node, or of the first answering node of a list.

    ``url`` may name several nodes of a cluster, comma-separated (as
    ``RABBITMQ_MANAGEMENT_URL`` may): a request goes to the node that
    answered last, and moves on to the next when that one cannot be reached.
    Any node of a cluster answers for the whole cluster.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._nodes = [_split_credentials(node) for node in split_url_list(url)]
        self._current = 0
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer of the first node that can be reached, from the one that answered last."""
        unreachable: list[str] = []
        for step in range(len(self._nodes)):
            index = (self._current + step) % len(self._nodes)
            base_url, auth = self._nodes[index]
            try:
                response = await self._http.request(
                    method, f"{base_url}/api{path}", auth=auth, **kwargs
                )
            except httpx.TransportError as exc:
                unreachable.append(f"{base_url}: {exc!r}")
                continue
            except httpx.HTTPError as exc:
                raise ManagementError(f"management API failed: {exc!r}") from exc
            self._current = index
            return response
        raise ManagementError("management API unreachable: " + "; ".join(unreachable))

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise ManagementError(
                f"{method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/overview")
        return result

    async def enabled_plugins(self) -> set[str]:
        nodes: list[dict[str, Any]] = await self._request("GET", "/nodes")
        return {plugin for node in nodes for plugin in node.get("enabled_plugins", [])}

    async def import_definitions(self, definitions: dict[str, Any]) -> None:
        await self._request("POST", "/definitions", json=definitions)

    async def vhosts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request("GET", "/vhosts")
        return result

    async def vhost_exists(self, vhost: str) -> bool:
        try:
            await self._request("GET", f"/vhosts/{quote(vhost, safe='')}")
        except ManagementError as exc:
            if " 404:" in str(exc):
                return False
            raise
        return True

    async def delete_vhost(self, vhost: str) -> None:
        await self._request("DELETE", f"/vhosts/{quote(vhost, safe='')}")

    async def queues(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._request(
            "GET", f"/queues/{quote(vhost, safe='')}"
        )
        return result

    async def connections(self, vhost: str) -> list[dict[str, Any]]:
        """The client connections to ``vhost``: ``name`` (``connection_name``), ``node``…"""
        result: list[dict[str, Any]] = await self._request(
            "GET", f"/vhosts/{quote(vhost, safe='')}/connections"
        )
        return result

    async def set_operator_policy(self, vhost: str, name: str, policy: dict[str, Any]) -> None:
        """An operator policy: caps (e.g. max-length) that win over queue arguments."""
        path = f"/operator-policies/{quote(vhost, safe='')}/{quote(name, safe='')}"
        await self._request("PUT", path, json=policy)

    async def delete_operator_policy(self, vhost: str, name: str) -> None:
        path = f"/operator-policies/{quote(vhost, safe='')}/{quote(name, safe='')}"
        await self._request("DELETE", path)

    async def purge_queue(self, vhost: str, name: str) -> None:
        await self._request(
            "DELETE", f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}/contents"
        )

    async def queue(self, vhost: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "GET", f"/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
        )
        return result
