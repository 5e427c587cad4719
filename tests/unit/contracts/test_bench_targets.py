"""B2's per-process targets name processes B2 measures, so none is left unchecked.

B2 reports CPU and RSS under the names of ``devtools.run.plan()`` (plus the
PostgreSQL and RabbitMQ servers); a target keyed by any other name is never
compared with anything, and its row says "none set".
"""

from __future__ import annotations

from bench.b2_report import CPU_TARGETS_MS, RSS_TARGETS_MB, cpu_row
from bench.b2_system import DEVTOOLS_PREFIX
from devtools import run

SERVERS = {"postgresql", "rabbitmq"}


def measured_names() -> set[str]:
    plan = run.plan(9100, smtp_external=True)
    return {p.name for p in plan if not p.module.startswith(DEVTOOLS_PREFIX)} | SERVERS


def test_every_cpu_target_names_a_measured_process() -> None:
    assert set(CPU_TARGETS_MS) <= measured_names()


def test_every_memory_target_names_a_measured_process() -> None:
    assert set(RSS_TARGETS_MB) <= measured_names() - SERVERS


def test_the_follow_ups_consumer_is_held_to_its_target() -> None:
    reports = cpu_row("reports", 0.75, "30/s")
    assert reports["met"] is False
    assert reports["target_text"] == "<= 0.7 ms"
