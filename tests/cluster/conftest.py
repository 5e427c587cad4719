"""Fixtures of `make test-cluster`: a three-node RabbitMQ cluster on this machine.

The cluster is started for the session (or found running) and stopped at
its end, with its files removed; see ``devtools.cluster``. Each test gets a
vhost of its own on it, loaded from broker/definitions.json through the
management API of the first node that answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from devtools.cluster import Cluster, Node
from shared.management import ManagementClient
from shared.messaging.definitions import DEFINITIONS_PATH, retarget
from tests.support.services import new_resource_name


@dataclass(frozen=True)
class ClusterBroker:
    """This test's vhost, with the product's topology, on every node of the cluster."""

    cluster: Cluster
    vhost: str

    def amqp_urls(self, user: str) -> str:
        """``AMQP_URL`` naming the three nodes, as a broker user (dev password = user name)."""
        return self.cluster.amqp_urls(user, self.vhost)

    def management(self) -> ManagementClient:
        return ManagementClient(self.cluster.management_urls("ops"), timeout=10)

    async def leader_of(self, queue: str) -> Node:
        async with self.management() as admin:
            return self.cluster.node_named((await admin.queue(self.vhost, queue))["leader"])


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    nodes = Cluster()
    nodes.up()
    yield nodes
    nodes.down()


@pytest.fixture
async def cluster_broker(cluster: Cluster) -> AsyncIterator[ClusterBroker]:
    vhost = new_resource_name()
    definitions = retarget(
        json.loads(DEFINITIONS_PATH.read_text()), vhost, description="cluster test"
    )
    async with ManagementClient(cluster.management_urls()) as admin:
        await admin.import_definitions(definitions)
    yield ClusterBroker(cluster, vhost)
    # a node the test stopped or killed comes back, so the next test starts with three
    await asyncio.to_thread(cluster.up)
    async with ManagementClient(cluster.management_urls()) as admin:
        await admin.delete_vhost(vhost)
