"""``python -m bench.summary``: bench/results/*.json as one Markdown table (results/README.md).

Each result file carries its ``summary`` rows (what, figure, baseline, ratio,
target), its date and its commit; a target not met stays in the table, marked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import RESULTS

HEADER = """# Benchmark results

Written by `make bench` from the JSON files beside this one (figures, machine,
commit). Every figure is the median of the runs shown, measured with its
baseline in the same run on the same machine; see `bench.md` in the design
notes for the method and the targets. B2 (end to end, with B4 relay lag and
B7 memory) also draws `b2_throughput.png` and `b2_latency_cdf.png` here (not
committed); its CPU rows are per RSVP, per process, read from /proc.

| benchmark | what | figure | baseline (same run) | ratio | target | date | commit | runs |
|---|---|---|---|---|---|---|---|---|
"""


def target_cell(row: dict[str, Any]) -> str:
    """A ratio target (``target``: 0.85) or one stated in words (``target_text`` + ``met``)."""
    if "target_text" in row:
        met = row.get("met")
        if met is None:
            return str(row["target_text"])
        return f"{row['target_text']} ({'met' if met else '**not met**'})"
    met = row["ratio"] >= row["target"]
    return f">= {row['target']}x ({'met' if met else '**not met**'})"


def rows(report: dict[str, Any]) -> list[str]:
    settings = report.get("settings", {})
    runs = settings.get("runs_text") or (
        f"{settings.get('runs', '?')} x {settings.get('messages', '?')} msgs"
    )
    lines = []
    for row in report.get("summary", []):
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.2f}x"
        lines.append(
            f"| {report['benchmark']} | {row['what']} | {row['figure']} | {row['baseline']} "
            f"| {ratio} | {target_cell(row)} "
            f"| {report['date'][:10]} | `{report['commit']}` | {runs} |"
        )
    return lines


def machine_line(reports: list[dict[str, Any]]) -> str:
    machines = {str(r["machine"].get("cpu")) for r in reports if "machine" in r}
    first: dict[str, Any] = {}
    for report in reports:  # what one report leaves out (server versions), another may say
        for key, value in report.get("machine", {}).items():
            first.setdefault(key, value)
    return (
        f"\nMachine: {', '.join(sorted(machines))}, {first.get('cores')} cores shared by every "
        f"process and both sinks; RabbitMQ {first.get('rabbitmq')}, "
        f"PostgreSQL {first.get('postgresql')}, Python {first.get('python')}.\n"
    )


def write(results: Path = RESULTS) -> Path:
    reports = [json.loads(path.read_text()) for path in sorted(results.glob("*.json"))]
    body = HEADER + "\n".join(line for report in reports for line in rows(report)) + "\n"
    if reports:
        body += machine_line(reports)
    target = results / "README.md"
    target.write_text(body)
    return target


if __name__ == "__main__":
    print(f"wrote {write().relative_to(Path.cwd())}")
