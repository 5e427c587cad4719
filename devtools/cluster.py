"""A three-node RabbitMQ cluster on this machine, run from Debian's rabbitmq-server scripts.

    python -m devtools.cluster up       # start the nodes (or find them running), cluster them
    python -m devtools.cluster status   # what each node says about the cluster
    python -m devtools.cluster down     # stop the nodes and remove their data

For ``make test-cluster`` and for trying the system on a cluster by hand.
Each node has its own name (``rsvp-c1@localhost``…), AMQP, distribution
and management ports and its own data and log directories under
``RSVP_CLUSTER_DIR`` (default ``/tmp/rsvp-cluster``). The nodes share an
Erlang cookie that lives in that directory (it is their ``HOME``), so these
commands never reach another broker on the machine, the shared
``rabbit@localhost`` included. Only the management plugin is enabled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
DEFAULT_DIR = Path(os.environ.get("RSVP_CLUSTER_DIR", Path(tempfile.gettempdir()) / "rsvp-cluster"))
#: AMQP on 5781.., distribution on 25781.., management on 15781..: clear of a default node.
BASE_PORT = 5780
SIZE = 3
START_TIMEOUT_S = 120.0


class ClusterError(RuntimeError):
    """A node did not start, join or answer as expected."""


@dataclass(frozen=True)
class Node:
    index: int  #: 1, 2, 3

    @property
    def name(self) -> str:
        return f"rsvp-c{self.index}@localhost"

    @property
    def amqp_port(self) -> int:
        return BASE_PORT + self.index

    @property
    def dist_port(self) -> int:
        return 20000 + BASE_PORT + self.index

    @property
    def management_port(self) -> int:
        return 10000 + BASE_PORT + self.index

    def amqp_url(self, user: str, vhost: str) -> str:
        """The node's AMQP URL as a broker user whose dev password is its name."""
        return f"amqp://{user}:{user}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def management_url(self, user: str = "guest", password: str | None = None) -> str:
        return f"http://{user}:{password or user}@127.0.0.1:{self.management_port}"


class Cluster:
    """The nodes, their files, and the rabbitmqctl commands run against them."""

    def __init__(self, base: Path = DEFAULT_DIR, size: int = SIZE) -> None:
        self.base = base
        self.nodes = tuple(Node(i) for i in range(1, size + 1))

    # -- URLs for the processes ---------------------------------------------------

    def amqp_urls(self, user: str, vhost: str) -> str:
        """``AMQP_URL`` naming every node, comma-separated."""
        return ",".join(node.amqp_url(user, vhost) for node in self.nodes)

    def management_urls(self, user: str = "guest", password: str | None = None) -> str:
        return ",".join(node.management_url(user, password) for node in self.nodes)

    def node_named(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    # -- commands -----------------------------------------------------------------

    def _home(self, node: Node) -> Path:
        return self.base / node.name.split("@")[0]

    def _env(self, node: Node) -> dict[str, str]:
        home = self._home(node)
        return {
            **os.environ,
            "HOME": str(self.base),  # the cookie: $HOME/.erlang.cookie, shared by the nodes
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
            "RABBITMQ_PID_FILE": str(home / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(home / "advanced.config"),
        }

    def ctl(self, node: Node, *args: str, tool: str = "rabbitmqctl", check: bool = True) -> str:
        """Run a CLI tool (``rabbitmqctl``, ``rabbitmq-queues``…) against ``node``; its output."""
        # a fixed tool from Debian's package with arguments built here, never from input
        done = subprocess.run(  # noqa: S603
            [str(RABBITMQ_BIN / tool), "-n", node.name, *args],
            env=self._env(node),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            said = (done.stdout + done.stderr).strip()
            raise ClusterError(f"{tool} {' '.join(args)} on {node.name}: {said}")
        return done.stdout

    def _passes(self, node: Node, check: str) -> bool:
        try:
            self.ctl(node, "-q", check, tool="rabbitmq-diagnostics")
        except (ClusterError, subprocess.TimeoutExpired):
            return False
        return True

    def is_running(self, node: Node) -> bool:
        """Whether the node's RabbitMQ application runs (not only its Erlang runtime)."""
        return self._passes(node, "check_running")

    def is_alive(self, node: Node) -> bool:
        """Whether the node's Erlang runtime answers (its application may be stopped)."""
        return self._passes(node, "ping")

    def running_nodes(self, node: Node) -> list[str]:
        status: dict[str, Any] = json.loads(self.ctl(node, "cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def stop_app(self, node: Node) -> None:
        self.ctl(node, "stop_app")

    def kill(self, node: Node) -> None:
        """SIGKILL the node's Erlang runtime, as a crash or a machine lost would; no goodbye."""
        pid = int((self._home(node) / "rabbit.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)

    def start_app(self, node: Node) -> None:
        self.ctl(node, "start_app")
        self._wait_running([node])

    # -- up and down --------------------------------------------------------------

    def _write_files(self, node: Node) -> None:
        home = self._home(node)
        home.mkdir(parents=True, exist_ok=True)
        (home / "rabbitmq.conf").write_text(
            f"management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {node.management_port}\n"
            "loopback_users.guest = true\n"
        )
        (home / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (home / "advanced.config").write_text("[].\n")

    def _start(self, node: Node) -> None:
        self._write_files(node)
        log = self._home(node).with_suffix(".out").open("ab")
        with log:
            # a detached server: it outlives this command; `down` stops it
            subprocess.Popen(  # noqa: S603  (a fixed program, no arguments)
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self._env(node),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait_running(self, nodes: Sequence[Node]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            while not self.is_running(node):
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"{node.name} did not start in {START_TIMEOUT_S:.0f}s; see {self.base}"
                    )
                time.sleep(0.5)

    def up(self) -> None:
        """Start what is not running and join nodes 2.. to node 1; a no-op when all is up."""
        self.base.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            if not self.is_alive(node):
                self._start(node)
            elif not self.is_running(node):
                self.ctl(node, "start_app")
        self._wait_running(self.nodes)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if first.name not in self.running_nodes(node):
                self.ctl(node, "stop_app")
                self.ctl(node, "reset")
                self.ctl(node, "join_cluster", first.name)
                self.ctl(node, "start_app")
        self._wait_running(self.nodes)
        running = set(self.running_nodes(first))
        if running != {node.name for node in self.nodes}:
            raise ClusterError(f"the cluster runs {sorted(running)}, not all {SIZE} nodes")

    def down(self) -> None:
        """Stop every node (its Erlang runtime too) and remove the cluster's files."""
        for node in self.nodes:
            if self.is_alive(node):
                self.ctl(node, "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    cluster = Cluster()
    if args.command == "up":
        started = time.monotonic()
        cluster.up()
        print(f"✓ cluster of {SIZE} up in {time.monotonic() - started:.0f}s")
        print(f"  AMQP_URL={cluster.amqp_urls('calendar', 'rsvp')}")
        print(f"  RABBITMQ_MANAGEMENT_URL={cluster.management_urls()}")
    elif args.command == "down":
        cluster.down()
        print("✓ cluster stopped, its files removed")
    else:
        for node in cluster.nodes:
            state = "running" if cluster.is_running(node) else "stopped"
            print(f"{node.name}: {state}, AMQP {node.amqp_port}, UI {node.management_port}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
