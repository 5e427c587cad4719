"""Two API replicas behind nginx running the repository's own ``deploy/nginx/nginx.conf``.

The replicas share only the run's PostgreSQL database and Redis, as in
compose. Which replica served a request is read from nginx's access log
(``upstream=``), found by the ``X-Request-ID`` the test sent. The replica
kill is the module's last test: it leaves one replica standing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.api import create_event, register
from tests.support.nginx import Nginx, nginx_in_front_of
from tests.support.polling import wait_until
from tests.support.replicas import (
    Replica,
    api_replicas,
    client_from,
    random_loopback_address,
    replica_env,
    scratch_directory,
)
from tests.support.services import BrokerEnv

# two API processes and nginx start with the first test, 160 RSVPs are sent in the last;
# a loaded machine makes both slow
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: RATE_LIMIT_ANONYMOUS of the replicas: small, to count one client's requests to it.
#: Per hour, so that a short test never crosses a window's edge.
ANONYMOUS_LIMIT = 15


@dataclass
class Balanced:
    nginx: Nginx
    replicas: list[Replica]
    database: asyncpg.Connection

    def client(self, address: str | None = None) -> httpx.AsyncClient:
        """A client of nginx from a loopback address of its own (fresh per-IP counters)."""
        return client_from(address or random_loopback_address(), self.nginx.url)


@pytest.fixture(scope="module")
async def balanced(database_url: str, broker: BrokerEnv) -> AsyncIterator[Balanced]:
    env = replica_env(
        database_url,
        broker.amqp_url("calendar"),
        RATE_LIMIT_ANONYMOUS=f"{ANONYMOUS_LIMIT}/hour",
    )
    async with (
        scratch_directory("rsvp-lb-") as directory,
        api_replicas(2, env, directory) as replicas,
        nginx_in_front_of([r.port for r in replicas], directory) as nginx,
    ):
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        database = await asyncpg.connect(dsn)
        try:
            yield Balanced(nginx=nginx, replicas=replicas, database=database)
        finally:
            await database.close()


def traced() -> dict[str, str]:
    return {"X-Request-ID": uuid.uuid4().hex}


async def on_another_replica(
    balanced: Balanced, send: Any, than: str, attempts: int = 6
) -> tuple[httpx.Response, str]:
    """Send (``send(headers)``) until nginx gives it to a replica other than ``than``."""
    for _ in range(attempts):
        headers = traced()
        response = await send(headers)
        served = await balanced.nginx.served(headers["X-Request-ID"])
        if served.upstreams[-1] != than:
            return response, served.upstreams[-1]
    raise AssertionError(f"nginx sent {attempts} requests in a row to {than}")


async def test_requests_are_spread_over_both_replicas(balanced: Balanced) -> None:
    async with balanced.client() as client:
        ids = []
        for _ in range(8):
            headers = traced()
            response = await client.get("/events", params={"limit": 1}, headers=headers)
            assert response.status_code == 200, response.text
            ids.append(headers["X-Request-ID"])

    served = [(await balanced.nginx.served(request_id)).upstreams for request_id in ids]
    counts = {r.address: served.count((r.address,)) for r in balanced.replicas}
    assert counts == {r.address: 4 for r in balanced.replicas}, served


async def test_a_token_from_one_replica_works_on_the_other(balanced: Balanced) -> None:
    async with balanced.client() as client:
        user = await register(client)
        email = user["email"]
        headers = traced()
        signed_in = await client.post(
            "/auth/token", data={"username": email, "password": "correct horse"}, headers=headers
        )
        assert signed_in.status_code == 200, signed_in.text
        issuer = (await balanced.nginx.served(headers["X-Request-ID"])).upstreams[-1]
        bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

        response, used_on = await on_another_replica(
            balanced,
            lambda h: client.get("/users/me/push-subscriptions", headers=bearer | h),
            than=issuer,
        )

    assert response.status_code == 200, response.text
    assert used_on != issuer


async def test_an_idempotency_key_replays_the_same_rsvp_on_the_other_replica(
    balanced: Balanced,
) -> None:
    async with balanced.client() as client:
        organizer, guest = await register(client), await register(client)
        event = await create_event(client, organizer)
        key = str(uuid.uuid4())

        async def answer(headers: dict[str, str]) -> httpx.Response:
            return await client.post(
                f"/events/{event['id']}/rsvps",
                json={"status": "going", "guests": 1},
                headers=guest["headers"] | {"Idempotency-Key": key} | headers,
            )

        first_headers = traced()
        first = await answer(first_headers)
        first_on = (await balanced.nginx.served(first_headers["X-Request-ID"])).upstreams[-1]
        again, again_on = await on_another_replica(balanced, answer, than=first_on)

    assert first.status_code == 201, first.text
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again_on != first_on
    rows = await balanced.database.fetchval(
        "SELECT count(*) FROM rsvps WHERE event_id = $1", uuid.UUID(event["id"])
    )
    assert rows == 1


async def test_limits_count_the_client_address_nginx_forwards(balanced: Balanced) -> None:
    first_ip, second_ip = random_loopback_address(), random_loopback_address()
    async with balanced.client(first_ip) as first, balanced.client(second_ip) as second:
        sent = []
        for _ in range(ANONYMOUS_LIMIT):
            headers = traced()
            answered = await first.get("/events", params={"limit": 1}, headers=headers)
            assert answered.status_code == 200, answered.text
            sent.append(headers["X-Request-ID"])
        # the client's own X-Forwarded-For is overwritten by nginx, not believed
        spoofed = await first.get(
            "/events", params={"limit": 1}, headers={"X-Forwarded-For": second_ip}
        )
        other_client = await second.get("/events", params={"limit": 1})

    replicas = {(await balanced.nginx.served(request_id)).upstreams[-1] for request_id in sent}
    assert replicas == {r.address for r in balanced.replicas}, "one count across replicas"
    assert spoofed.status_code == 429
    assert "retry-after" in spoofed.headers
    assert other_client.status_code == 200, other_client.text


async def test_a_peer_that_is_not_a_configured_proxy_cannot_choose_its_address(
    balanced: Balanced,
) -> None:
    replica = balanced.replicas[0]
    async with client_from(random_loopback_address(), replica.url) as direct:
        answers = [
            await direct.get(
                "/events",
                params={"limit": 1},
                headers={"X-Forwarded-For": random_loopback_address()},
            )
            for _ in range(ANONYMOUS_LIMIT + 1)
        ]

    statuses = [a.status_code for a in answers]
    assert statuses == [200] * ANONYMOUS_LIMIT + [429], "counted per peer, not per header"


@asynccontextmanager
async def replica_dying_mid_request() -> AsyncIterator[int]:
    """A port where a "replica" reads each request whole, then closes without answering."""

    async def take_and_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        await reader.readexactly(int(length[1]) if length else 0)
        writer.close()

    server = await asyncio.start_server(take_and_drop, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_nginx_resends_a_keyed_rsvp_answer_but_no_other_write(balanced: Balanced) -> None:
    replica = balanced.replicas[0]
    async with balanced.client() as setup:
        organizer, guest = await register(setup), await register(setup)
        event = await create_event(setup, organizer)
    async with (
        replica_dying_mid_request() as dying_port,
        scratch_directory("rsvp-lb-retry-") as directory,
        nginx_in_front_of([dying_port, replica.port], directory) as nginx,
        client_from(random_loopback_address(), nginx.url) as client,
    ):
        dying = f"127.0.0.1:{dying_port}"

        async def until_it_met_the_dying_replica(send: Any) -> tuple[httpx.Response, Any]:
            for _ in range(4):
                headers = traced()
                response = await send(headers)
                served = await nginx.served(headers["X-Request-ID"])
                if dying in served.upstreams:
                    return response, served
            raise AssertionError("nginx never chose the dying replica")

        keyed, keyed_served = await until_it_met_the_dying_replica(
            lambda h: client.post(
                f"/events/{event['id']}/rsvps",
                json={"status": "going"},
                headers=guest["headers"] | {"Idempotency-Key": str(uuid.uuid4())} | h,
            )
        )
        other, other_served = await until_it_met_the_dying_replica(
            lambda h: client.post(
                "/events",
                json={"title": "Sent once", "starts_at": event["starts_at"]},
                headers=organizer["headers"] | h,
            )
        )

    # the RSVP answer reached the dying replica, which dropped it: sent again to the live one
    assert keyed_served.upstreams == (dying, replica.address)
    assert keyed.status_code == 201, keyed.text
    # any other write may have been carried out there: the client hears 503, nginx sends no copy
    assert other_served.upstreams == (dying,)
    assert other.status_code == 503
    assert other.json() == {"detail": "Service temporarily unavailable"}
    assert other.headers["retry-after"] == "5"


@dataclass
class Accepted:
    rsvp_id: uuid.UUID
    status_code: int


async def _answer_until_settled(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any], sent: list[str]
) -> Accepted | None:
    """One RSVP as a careful client sends it: a key, and the same key again on a 502/503."""
    key = str(uuid.uuid4())
    for _ in range(5):
        sent.append(uuid.uuid4().hex)
        response = await client.post(
            f"/events/{event['id']}/rsvps",
            json={"status": "going"},
            headers=user["headers"] | {"Idempotency-Key": key, "X-Request-ID": sent[-1]},
        )
        if response.status_code in (200, 201):
            return Accepted(uuid.UUID(response.json()["id"]), response.status_code)
        assert response.status_code in (502, 503), response.text
        await asyncio.sleep(0.2)
    return None


async def test_killing_a_replica_mid_load_loses_no_rsvp_and_nginx_stops_using_it(
    balanced: Balanced,
) -> None:
    victim, survivor = balanced.replicas
    async with balanced.client() as client:
        organizer = await register(client)
        guests = [await register(client) for _ in range(4)]
        events = [await create_event(client, organizer) for _ in range(40)]
        work: asyncio.Queue[tuple[dict[str, Any], dict[str, Any]]] = asyncio.Queue()
        for event in events:
            for guest in guests:
                work.put_nowait((event, guest))
        accepted: list[Accepted] = []
        refused: list[tuple[str, str]] = []
        log_length_at_kill: list[int] = []

        async def worker() -> None:
            while not work.empty():
                event, guest = work.get_nowait()
                outcome = await _answer_until_settled(client, event, guest, sent)
                if outcome is None:
                    refused.append((event["id"], guest["id"]))
                else:
                    accepted.append(outcome)
                if len(accepted) == 40 and not log_length_at_kill:
                    # SIGKILL: no drain, RSVPs in flight on it die with it
                    os.killpg(victim.process.pid, signal.SIGKILL)
                    log_length_at_kill.append(len(balanced.nginx.access_log()))
                    killed_at.append(time.monotonic())

        killed_at: list[float] = []
        sent: list[str] = []
        await asyncio.gather(*(worker() for _ in range(8)))
        load_after_kill_s = time.monotonic() - killed_at[0]
    # nginx logs a request just after answering it: wait for the last lines
    await wait_until(
        lambda: {r.request_id for r in balanced.nginx.access_log()} >= set(sent),
        what="every RSVP answer logged",
    )

    assert log_length_at_kill, "the replica was never killed"
    await victim.process.wait()
    # every RSVP a client was told about is in PostgreSQL, with its outbox message
    ids = [a.rsvp_id for a in accepted]
    stored = await balanced.database.fetchval("SELECT count(*) FROM rsvps WHERE id = ANY($1)", ids)
    published = await balanced.database.fetchval(
        "SELECT count(DISTINCT (convert_from(body, 'UTF8')::jsonb #>> '{data,rsvp_id}')::uuid)"
        " FROM outbox WHERE message_type = 'rsvp.created'"
        " AND (convert_from(body, 'UTF8')::jsonb #>> '{data,rsvp_id}')::uuid = ANY($1)",
        ids,
    )
    assert (len(accepted), refused) == (len(events) * len(guests), [])
    assert stored == len(ids) == len(set(ids))
    assert published == len(ids)

    after_kill = balanced.nginx.access_log()[log_length_at_kill[0] :]
    answers = [r for r in after_kill if "/rsvps" in r.request]
    tried_victim = [r for r in answers if victim.address in r.upstreams]
    # requests in flight at the kill, the failures that mark it down (max_fails=3), and
    # one probe per fail_timeout (10 s) that the load outlasted on a slow machine
    probes = int(load_after_kill_s // 10)
    assert len(tried_victim) <= 8 + 3 + probes, tried_victim
    assert len(answers) >= 100
    assert len([r for r in answers[30:] if victim.address in r.upstreams]) <= probes
    # a keyed answer that failed on the dead replica was moved to the live one
    assert any(
        r.upstreams == (victim.address, survivor.address) and r.status < 300 for r in tried_victim
    ), tried_victim
