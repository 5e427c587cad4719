"""Debian's nginx running the repository's ``deploy/nginx/nginx.conf`` on loopback.

The main file is copied unchanged; only the deployment's ``site/`` includes
are written here: the replicas on loopback ports (with the server options of
compose's ``site/replicas.conf``, so passive health is the one deployed),
a non-root port, and logs, pid and temporary files in a directory of the
test's own.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.polling import wait_until
from tests.support.ports import free_port
from tests.support.processes import ROOT, reap

NGINX = "/usr/sbin/nginx"
DEPLOYED = ROOT / "deploy" / "nginx"
_SERVER = re.compile(r"^\s*server\s+(\S+)\s+(.*);\s*$", flags=re.MULTILINE)
_LOGGED = re.compile(r'"(?P<request>[^"]*)" (?P<status>\d+) .* upstream=(?P<upstream>.*?) ustatus=')


def deployed_server_options() -> str:
    """The options compose's replicas carry (``max_fails=3 fail_timeout=10s``), less ``resolve``.

    ``resolve`` needs a resolver and nginx 1.27.3+; the test's replicas are addresses.
    """
    lines = _SERVER.findall((DEPLOYED / "site" / "replicas.conf").read_text())
    options = {" ".join(o for o in opts.split() if o != "resolve") for _, opts in lines}
    assert len(options) == 1, f"compose's replicas differ in their options: {options}"
    return options.pop()


@dataclass(frozen=True)
class LoggedRequest:
    """One line of nginx's ``balanced`` access log."""

    request: str
    status: int
    #: every replica the request was tried on, in order ("127.0.0.1:P")
    upstreams: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class Nginx:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[LoggedRequest]:
        lines = (self.directory / "access.log").read_text().splitlines()
        logged = []
        for line in lines:
            found = _LOGGED.search(line)
            assert found is not None, line
            upstream = found["upstream"]
            logged.append(
                LoggedRequest(
                    request=found["request"],
                    status=int(found["status"]),
                    upstreams=tuple(u.strip() for u in upstream.split(",") if u.strip() != "-"),
                    request_id=line.rsplit(" id=", 1)[1],
                )
            )
        return logged

    async def served(self, request_id: str, timeout: float = 10.0) -> LoggedRequest:
        """The log line of the request sent with ``X-Request-ID: request_id``.

        nginx logs a request once its answer is sent, so the client may read
        the answer a moment before the line is written.
        """

        def logged() -> list[LoggedRequest]:
            return [r for r in self.access_log() if r.request_id == request_id]

        matches = await wait_until(logged, timeout=timeout, what=f"request {request_id} logged")
        assert len(matches) == 1, (request_id, matches)
        return matches[0]


def _write_site(directory: Path, replica_ports: Sequence[int], port: int) -> Path:
    conf = directory / "conf"
    site = conf / "site"
    site.mkdir(parents=True)
    shutil.copy(DEPLOYED / "nginx.conf", conf / "nginx.conf")
    temp = directory / "temp"
    temp.mkdir()
    temp_paths = "\n".join(
        f"{kind}_temp_path {temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (site / "http.conf").write_text(
        f"access_log {directory / 'access.log'} balanced;\n{temp_paths}\n"
    )
    options = deployed_server_options()
    (site / "replicas.conf").write_text(
        "".join(f"server 127.0.0.1:{p} {options};\n" for p in replica_ports)
    )
    (site / "listen.conf").write_text(f"listen 127.0.0.1:{port};\n")
    return conf / "nginx.conf"


@asynccontextmanager
async def nginx_in_front_of(replica_ports: Sequence[int], directory: Path) -> AsyncIterator[Nginx]:
    """nginx (``daemon off``) balancing ``replica_ports``; stopped at the end."""
    assert shutil.which(NGINX), "nginx is missing: `make nginx` installs it (make test does)"
    port = free_port()
    conf = await asyncio.to_thread(_write_site, directory, replica_ports, port)
    # workers as the test's own user: they write temp files in the test's directory
    directives = f"daemon off; pid {directory / 'nginx.pid'}; user {getpass.getuser()};"
    error_log = directory / "error.log"
    process = await asyncio.create_subprocess_exec(
        NGINX,
        "-p", str(directory), "-c", str(conf), "-e", str(error_log), "-g", directives,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    nginx = Nginx(port=port, directory=directory)
    try:
        await _wait_listening(nginx, process, error_log)
        yield nginx
    finally:
        await reap(process)


def _read_if_any(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _wait_listening(
    nginx: Nginx, process: asyncio.subprocess.Process, error_log: Path, timeout: float = 20.0
) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client, asyncio.timeout(timeout):
        while True:
            if process.returncode is not None:
                said = await asyncio.to_thread(_read_if_any, error_log)
                raise AssertionError(f"nginx exited with {process.returncode}:\n{said}")
            with suppress(httpx.TransportError):
                if (await client.get(f"{nginx.url}/nginx-healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
