"""The Grafana dashboard kept in the repo, read by code: its queries and their pictures.

``deploy/grafana/dashboards/rsvp-pipeline.json`` is the one source. Grafana
shows it (compose provisions it); :func:`render` draws each of its panels to a
PNG with matplotlib, from the panel's own PromQL against Prometheus'
``query_range`` API, so the pictures and the dashboard cannot drift apart; and
:func:`queried_metrics` lists the series it needs, which a test checks every
process exports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "rsvp-pipeline.json"

#: PromQL words that look like metric names but are not.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"and", "or", "unless", "bool", "offset", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]


def load(path: Path = DASHBOARD) -> tuple[Panel, ...]:
    """The dashboard's panels with their queries, in its order."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return tuple(
        Panel(
            title=panel["title"],
            unit=panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short"),
            queries=tuple(
                Query(target["expr"], target.get("legendFormat", "")) for target in panel["targets"]
            ),
        )
        for panel in dashboard["panels"]
    )


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not its functions, labels or keywords)."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub("", bare)
    bare = _RANGE.sub("", bare)
    bare = _GROUPING.sub("", bare)
    return {name for name in _NAME.findall(bare) if name.lower() not in _KEYWORDS}


def queried_metrics(panels: Iterable[Panel]) -> set[str]:
    return {
        name for panel in panels for query in panel.queries for name in metric_names(query.expr)
    }


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition offers, with or without samples yet.

    A labelled counter that never counted has no sample, only its ``# TYPE``
    line; it is still exported, so its sample names are derived from the type.
    """
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            if kind == "counter" and not family.endswith("_total"):
                names.add(f"{family}_total")
            elif kind in ("histogram", "summary"):
                names.update(f"{family}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _rate_window(expr: str, window: str) -> str:
    return expr.replace("$__rate_interval", window)


def _label(legend: str, metric: dict[str, str]) -> str:
    text = _LEGEND.sub(lambda found: metric.get(found.group(1), ""), legend)
    return text or json.dumps(metric, sort_keys=True)


def query_range(
    client: httpx.Client, prometheus: str, expr: str, start: float, end: float, step: float
) -> Iterator[tuple[dict[str, str], list[float], list[float]]]:
    """Each series of ``expr`` over the range: its labels, times and values."""
    answer = client.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
    )
    answer.raise_for_status()
    for series in answer.json()["data"]["result"]:
        times = [float(t) - start for t, _ in series["values"]]
        values = [float(v) for _, v in series["values"]]
        yield series["metric"], times, values


def render(
    prometheus: str,
    start: float,
    end: float,
    out_dir: Path,
    *,
    step: float = 5.0,
    window: str = "30s",
    panels: tuple[Panel, ...] | None = None,
) -> list[Path]:
    """Each panel to ``out_dir/<nn>-<title>.png``, and all of them to ``dashboard.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = load() if panels is None else panels
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = 2
    rows = math.ceil(len(panels) / columns)
    overview, axes_grid = plt.subplots(rows, columns, figsize=(16, 3.6 * rows), squeeze=False)
    written: list[Path] = []
    with httpx.Client(timeout=30) as client:
        for index, panel in enumerate(panels):
            single, single_axes = plt.subplots(figsize=(8, 4))
            for axes in (single_axes, axes_grid[index // columns][index % columns]):
                for query in panel.queries:
                    expr = _rate_window(query.expr, window)
                    for metric, times, values in query_range(
                        client, prometheus, expr, start, end, step
                    ):
                        axes.plot(times, values, label=_label(query.legend, metric), linewidth=1.2)
                axes.set_title(f"{panel.title} [{panel.unit}]", fontsize=10)
                axes.set_xlabel("seconds into the run", fontsize=8)
                axes.grid(alpha=0.3)
                if axes.get_legend_handles_labels()[0]:
                    axes.legend(fontsize=7, loc="upper left")
            slug = re.sub(r"[^a-z0-9]+", "-", panel.title.lower()).strip("-")
            path = out_dir / f"{index + 1:02d}-{slug}.png"
            single.tight_layout()
            single.savefig(path, dpi=100)
            plt.close(single)
            written.append(path)
    for axes in axes_grid.flat[len(panels) :]:
        axes.set_visible(False)
    overview.tight_layout()
    overview_path = out_dir / "dashboard.png"
    overview.savefig(overview_path, dpi=80)
    plt.close(overview)
    return [overview_path, *written]
