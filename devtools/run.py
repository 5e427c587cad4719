"""`make run`: every process of the system in the foreground, stopped together.

Starts the API, the outbox relay, the delivery-report consumer, the scheduler, the email and
push consumers (once their packages have a ``__main__``), a development SMTP
sink unless ``SMTP_HOST`` is set, and a development Web Push service
(``devtools.pushsink`` on ``PUSH_SINK_PORT``, default 8090) that subscriptions
can point at. Output lines carry the process name.
Ctrl-C (or SIGTERM) sends SIGTERM to every process, waits for them to drain,
and kills what is still running after the grace period. Each process runs in
a session of its own, so the terminal's Ctrl-C reaches this runner alone: a
process sees one SIGTERM (drain), never a SIGINT on top of it (which it would
take as a second signal, and stop at once). If one process dies
on its own, the others are stopped too, and the exit code says so.

Every process gets this environment. A variable named ``<PROCESS>__<NAME>``
(for example ``EMAIL__AMQP_URL``) is passed to that process alone as
``<NAME>``: each service connects to the broker as its own user. Each one
that uses PostgreSQL logs in as its own role (migration 0011: ``rsvp_api``,
``rsvp_relay`` …, development password = name) on ``DATABASE_URL``'s server
and database, unless ``<PROCESS>__DATABASE_URL`` says otherwise;
``DATABASE_URL`` itself stays the owner's, the account ``make migrate`` uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass, field

from calendar_service.config import with_credentials
from devtools.env import EnvSettings

GRACE_S = 20.0
COLOURS = ("36", "32", "33", "35", "34", "31", "96")


@dataclass
class Process:
    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)
    #: The PostgreSQL role it logs in as (None: it uses no database).
    role: str | None = None
    handle: asyncio.subprocess.Process | None = None


def plan(metrics_base: int, smtp_external: bool) -> list[Process]:
    def port(offset: int) -> dict[str, str]:
        return {"METRICS_PORT": str(metrics_base + offset)}

    processes = [
        Process("api", "calendar_service", role="rsvp_api"),
        Process("relay", "calendar_service.relay", port(1), "rsvp_relay"),
        Process("reports", "calendar_service.delivery_reports", port(2), "rsvp_reports"),
        Process("scheduler", "calendar_service.scheduler", port(5), "rsvp_scheduler"),
        Process("deadletters", "calendar_service.deadletters", port(6), "rsvp_archiver"),
    ]
    for offset, (name, package) in enumerate(
        (("email", "email_consumer"), ("push", "push_consumer")), start=3
    ):
        if importlib.util.find_spec(f"{package}.__main__") is not None:
            processes.append(Process(name, package, port(offset), f"rsvp_{name}"))
    processes.insert(0, Process("pushsink", "devtools.pushsink"))
    if not smtp_external:
        processes.insert(0, Process("mail", "devtools.mailsink"))
    return processes


async def pipe_output(process: Process, colour: str, stream: asyncio.StreamReader) -> None:
    prefix = f"\033[{colour}m{process.name:>9} |\033[0m " if sys.stdout.isatty() else ""
    prefix = prefix or f"{process.name:>9} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def environment_for(process: Process, base: dict[str, str]) -> dict[str, str]:
    prefix = f"{process.name.upper()}__"
    own = {k.removeprefix(prefix): v for k, v in base.items() if k.startswith(prefix)}
    shared = {k: v for k, v in base.items() if "__" not in k or k.startswith("_")}
    if process.role is not None:
        # the owner's URL as the processes would read it: the environment, else .env
        owner = shared.get("DATABASE_URL") or EnvSettings().database_url
        shared["DATABASE_URL"] = with_credentials(owner, process.role, process.role)
    return {**shared, **process.env, **own}


async def start(process: Process, colour: str, tasks: list[asyncio.Task[None]]) -> None:
    env = environment_for(process, dict(os.environ))
    env.setdefault("LOG_FORMAT", "console" if sys.stdout.isatty() else "json")
    process.handle = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        process.module,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # only this runner signals it (see the module docstring)
    )
    assert process.handle.stdout is not None
    tasks.append(asyncio.create_task(pipe_output(process, colour, process.handle.stdout)))


async def stop_all(processes: list[Process]) -> None:
    running = [p for p in processes if p.handle and p.handle.returncode is None]
    for process in running:
        assert process.handle is not None
        with contextlib.suppress(ProcessLookupError):
            process.handle.send_signal(signal.SIGTERM)
    waits = [p.handle.wait() for p in running if p.handle]
    try:
        await asyncio.wait_for(asyncio.gather(*waits), timeout=GRACE_S)
    except TimeoutError:
        for process in running:
            if process.handle and process.handle.returncode is None:
                print(f"{process.name} did not stop in {GRACE_S:.0f}s: killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    process.handle.kill()


async def supervise(processes: list[Process]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    output: list[asyncio.Task[None]] = []
    for index, process in enumerate(processes):
        await start(process, COLOURS[index % len(COLOURS)], output)
    names = ", ".join(p.name for p in processes)
    print(f"started {names}; Ctrl-C stops them all", flush=True)

    exits = {asyncio.create_task(p.handle.wait()): p for p in processes if p.handle is not None}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *exits}, return_when=asyncio.FIRST_COMPLETED)
    failed = [exits[t] for t in done if t in exits]
    for process in failed:
        assert process.handle is not None
        print(f"{process.name} exited with code {process.handle.returncode}", flush=True)
    await stop_all(processes)
    await asyncio.gather(*output, return_exceptions=True)
    stopper.cancel()
    print("all processes stopped", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--metrics-base",
        type=int,
        default=9100,
        help="background processes serve /metrics on BASE+1.. (default 9100)",
    )
    args = parser.parse_args(argv)
    processes = plan(args.metrics_base, smtp_external="SMTP_HOST" in os.environ)
    return asyncio.run(supervise(processes))


if __name__ == "__main__":
    raise SystemExit(main())
