"""Render ``broker/definitions.json`` from the typed topology.

Run ``python -m shared.messaging.definitions`` to rewrite the file, or with
``--check`` to fail when the checked-in file differs from the topology.
The document loads unchanged with ``rabbitmqctl import_definitions``,
``POST /api/definitions`` and ``load_definitions`` at broker boot.

The broker accounts get development passwords equal to their names, hashed
with a salt derived from the name so the file is reproducible. Change them in
production (``rabbitmqctl change_password``); the README says how.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from shared.messaging.topology import (
    BROKER_USERS,
    EXCHANGES,
    TOPIC_PERMISSIONS,
    VHOST,
    WORK_QUEUES,
)

DEFINITIONS_PATH = Path(__file__).resolve().parents[2] / "broker" / "definitions.json"


def rabbit_password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` format: b64(salt + sha256(salt+pw))."""
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def _durable_quorum(name: str, vhost: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "durable": True,
        "auto_delete": False,
        "arguments": {"x-queue-type": "quorum", **arguments},
    }


def build_definitions(vhost: str = VHOST) -> dict[str, Any]:
    exchanges = [
        {
            "name": ex.name,
            "vhost": vhost,
            "type": ex.type,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for ex in EXCHANGES
    ]
    queues: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []

    def bind(exchange: str, queue: str, routing_key: str) -> None:
        bindings.append(
            {
                "source": exchange,
                "vhost": vhost,
                "destination": queue,
                "destination_type": "queue",
                "routing_key": routing_key,
                "arguments": {},
            }
        )

    for retry_exchange in sorted({q.retry_exchange for q in WORK_QUEUES}):
        exchanges.append(
            {
                "name": retry_exchange,
                "vhost": vhost,
                "type": "direct",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        )

    for queue in WORK_QUEUES:
        queues.append(_durable_quorum(queue.name, vhost, queue.arguments()))
        for binding in queue.bindings:
            bind(binding.exchange, queue.name, binding.routing_key)

        queues.append(_durable_quorum(queue.dead_letter_queue, vhost, {}))
        bind("dlx", queue.dead_letter_queue, queue.name)

        for retry_name, delay_s in queue.retry_queues:
            queues.append(
                _durable_quorum(
                    retry_name,
                    vhost,
                    {
                        "x-message-ttl": delay_s * 1000,
                        # back to the origin queue through the default exchange
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue.name,
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                    },
                )
            )
            bind(queue.retry_exchange, retry_name, retry_name)

    users = [
        {
            "name": user.name,
            "password_hash": rabbit_password_hash(
                user.name, hashlib.sha256(user.name.encode()).digest()[:4]
            ),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": list(user.tags),
            "limits": {},
        }
        for user in BROKER_USERS
    ]
    permissions = [
        {
            "user": user.name,
            "vhost": vhost,
            "configure": user.configure,
            "write": user.write,
            "read": user.read,
        }
        for user in BROKER_USERS
    ]
    return {
        "rabbitmq_version": "3.10.8",
        "users": users,
        "vhosts": [{"name": vhost, "limits": [], "metadata": {"description": "RSVP pipeline"}}],
        "permissions": permissions,
        "topic_permissions": [
            {
                "user": topic.user,
                "vhost": vhost,
                "exchange": topic.exchange,
                "write": topic.write,
                "read": topic.read,
            }
            for topic in TOPIC_PERMISSIONS
        ],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


def retarget(definitions: dict[str, Any], vhost: str, description: str = "") -> dict[str, Any]:
    """The same definitions for another vhost (a staging vhost, or a test run's own)."""
    moved: dict[str, Any] = json.loads(json.dumps(definitions))
    moved["vhosts"] = [{"name": vhost, "limits": [], "metadata": {"description": description}}]
    sections = ("permissions", "topic_permissions", "queues", "exchanges", "bindings")
    for section in (*sections, "policies", "parameters"):
        for item in moved.get(section, []):
            item["vhost"] = vhost
    return moved


def render(vhost: str = VHOST) -> str:
    return json.dumps(build_definitions(vhost), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    expected = render()
    if "--check" in args:
        current = DEFINITIONS_PATH.read_text() if DEFINITIONS_PATH.exists() else ""
        if current != expected:
            print(f"{DEFINITIONS_PATH} is stale: run `make definitions`", file=sys.stderr)
            return 1
        return 0
    DEFINITIONS_PATH.write_text(expected)
    print(f"wrote {DEFINITIONS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
