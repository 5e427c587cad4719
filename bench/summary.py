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
notes for the method and the targets.

| benchmark | what | figure | baseline (same run) | ratio | target | date | commit | runs |
|---|---|---|---|---|---|---|---|---|
"""


def rows(report: dict[str, Any]) -> list[str]:
    settings = report.get("settings", {})
    runs = f"{settings.get('runs', '?')} x {settings.get('messages', '?')} msgs"
    lines = []
    for row in report.get("summary", []):
        met = "met" if row["ratio"] >= row["target"] else "**not met**"
        lines.append(
            f"| {report['benchmark']} | {row['what']} | {row['figure']} | {row['baseline']} "
            f"| {row['ratio']:.2f}x | >= {row['target']}x ({met}) "
            f"| {report['date'][:10]} | `{report['commit']}` | {runs} |"
        )
    return lines


def machine_line(reports: list[dict[str, Any]]) -> str:
    machines = {str(r["machine"].get("cpu")) for r in reports if "machine" in r}
    first = reports[0]["machine"] if reports else {}
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
