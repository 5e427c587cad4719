"""CPU time and memory of processes, read from /proc: what the OS says each one cost.

CPU is counted for a process *tree*: the process's own ``utime + stime``, its
``cutime + cstime`` (children it has waited for), and every live descendant's
tree. The difference of two such readings is exact even when children came
and went in between: a child that exits moves its ticks from "live" to its
parent's ``cutime``. PostgreSQL is one tree under the postmaster, so backends
that connected and left during the run are counted too; RabbitMQ is the
``beam.smp`` process(es).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Stat:
    pid: int
    comm: str
    ppid: int
    own_ticks: int  #: utime + stime
    reaped_ticks: int  #: cutime + cstime: children that exited and were waited for


def read_stat(pid: int) -> Stat | None:
    """``/proc/<pid>/stat``, or None when the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm is in parentheses and may itself hold spaces or parentheses
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return Stat(pid, head.partition("(")[2], int(fields[1]), utime + stime, cutime + cstime)


def all_stats() -> dict[int, Stat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats[stat.pid] = stat
    return stats


def tree(root: int, stats: dict[int, Stat]) -> list[int]:
    """``root`` and every live process under it."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_ticks(root: int, stats: dict[int, Stat]) -> int:
    """CPU ticks of ``root`` and everything under it, live or reaped."""
    return sum(stats[pid].own_ticks + stats[pid].reaped_ticks for pid in tree(root, stats))


def postmaster_pids(stats: dict[int, Stat]) -> list[int]:
    """The root ``postgres`` process of each server (its parent is not postgres)."""
    return [
        s.pid
        for s in stats.values()
        if s.comm == "postgres" and (s.ppid not in stats or stats[s.ppid].comm != "postgres")
    ]


def broker_pids(stats: dict[int, Stat]) -> list[int]:
    return [s.pid for s in stats.values() if s.comm.startswith("beam.smp")]


def cpu_seconds(roots: Mapping[str, Iterable[int]], stats: dict[int, Stat]) -> dict[str, float]:
    """Seconds of CPU so far per named group of process trees."""
    return {
        name: sum(tree_ticks(pid, stats) for pid in pids) / TICKS_PER_S
        for name, pids in roots.items()
    }


def rss_bytes(pid: int) -> int:
    """Resident memory of one process now (0 when it is gone)."""
    try:
        resident = (PROC / str(pid) / "statm").read_text().split()[1]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return int(resident) * PAGE_BYTES


def tree_rss_bytes(root: int, stats: dict[int, Stat]) -> int:
    """Resident memory of a process and its live descendants (shared pages count twice)."""
    return sum(rss_bytes(pid) for pid in tree(root, stats))


def backend_ticks_by_role(database: str) -> dict[str, int]:
    """CPU ticks so far of the PostgreSQL backends connected to ``database``, per role.

    A backend's title names its role and database (``postgres: 15/main: rsvp_relay
    b2_x 127.0.0.1(…) idle``), so each service's share of the server is visible
    when every service logs in as its own role. Only live backends are read: one
    that disconnected during the run leaves its ticks in the postmaster's, so the
    shares are a lower bound, close when the pools keep their connections.
    """
    ticks: dict[str, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        words = title.split()
        # "postgres:", "15/main:", role, database, address, state
        if len(words) < 4 or words[0] != "postgres:" or words[3] != database:
            continue
        stat = read_stat(int(entry.name))
        if stat is not None:
            ticks[words[2]] = ticks.get(words[2], 0) + stat.own_ticks
    return ticks
