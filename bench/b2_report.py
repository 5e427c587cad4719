"""B2's figures against bench.md's targets: summary rows, a text report and two PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.b2_figures import PhaseRecord, accepted, delivery_ms, per_second
from bench.summary import target_cell

#: bench.md: CPU ms per RSVP at 30 RSVP/s, per process of devtools.run's plan and in total
#: ("reports" is the follow-ups consumer, calendar_service.delivery_reports).
CPU_TARGETS_MS = {
    "api": 1.5,
    "reports": 0.7,
    "push": 2.0,
    "email": 2.5,
    "relay": 0.5,
    "postgresql": 1.5,
    "rabbitmq": 2.0,
}
CPU_TOTAL_TARGET_MS = 10.0
RSS_TARGETS_MB = {"api": 250.0, "email": 150.0, "push": 150.0, "reports": 150.0}
BURST_HTTP_P99_MS = 500.0
BURST_MAIL_P99_MS = 2000.0
RELAY_LAG_P99_MS = 20.0
PEER = "naive Celery peer 19.8 ms (bench.md, 2026-11-29; not re-run)"


def row(
    what: str, figure: str, target: str, met: bool | None, baseline: str = "-"
) -> dict[str, Any]:
    return {
        "what": what,
        "figure": figure,
        "baseline": baseline,
        "ratio": None,
        "target_text": target,
        "met": met,
    }


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def steady_rows(f: dict[str, Any]) -> list[dict[str, Any]]:
    rate = f"{f['offered_rate_per_s']:g}/s"
    total = f["cpu_ms_per_rsvp_total"]
    rows = [
        row(
            f"B2 CPU per RSVP, all processes, at {rate}",
            f"{total} ms",
            f"<= {CPU_TOTAL_TARGET_MS} ms",
            total <= CPU_TOTAL_TARGET_MS,
            PEER,
        )
    ]
    rows += [cpu_row(name, ms, rate) for name, ms in f["cpu_ms_per_rsvp"].items()]
    return rows + latency_rows(f, rate)


def cpu_row(name: str, ms: float, rate: str) -> dict[str, Any]:
    """One process's CPU per RSVP against its target, if it has one."""
    limit = CPU_TARGETS_MS.get(name)
    target = "none set" if limit is None else f"<= {limit} ms"
    met = None if limit is None else ms <= limit
    return row(f"B2 CPU per RSVP, {name}, at {rate}", f"{ms} ms", target, met)


def latency_rows(f: dict[str, Any], rate: str) -> list[dict[str, Any]]:
    http, mail, push = f["http_latency"], f["to_mail_latency"], f["to_push_latency"]
    return [
        row(
            f"B2 HTTP p99 at {rate}",
            f"{http.get('p99_ms')} ms (p50 {http.get('p50_ms')})",
            "-",
            None,
        ),
        row(
            f"B2 2xx -> mail p99 at {rate}",
            f"{mail.get('p99_ms')} ms (p50 {mail.get('p50_ms')})",
            "-",
            None,
        ),
        row(
            f"B2 2xx -> push p99 at {rate}",
            f"{push.get('p99_ms')} ms (p50 {push.get('p50_ms')})",
            "-",
            None,
        ),
        row(
            f"B2 answers at {rate} (status: count)",
            ", ".join(f"{status}: {n}" for status, n in sorted(f["statuses"].items())),
            "-",
            None,
        ),
        row(
            f"B2 load generator behind its schedule p99 at {rate}",
            f"{f.get('generator_behind', {}).get('p99_ms')} ms",
            "-",
            None,
        ),
        row(
            f"B2 lost / duplicated at {rate}",
            f"{f['lost']} / {f['duplicated']}",
            "0 / 0",
            f["lost"] == 0 and f["duplicated"] == 0,
        ),
    ]


def burst_rows(f: dict[str, Any]) -> list[dict[str, Any]]:
    rate = f"{f['offered_rate_per_s']:g}/s"
    http, mail = f["http_latency"], f["to_mail_latency"]
    lag = f["relay_lag_ms"]["p99"]
    return [
        row(
            f"B2 accepted at {rate} for {f['seconds']:g} s",
            f"{f['accepted']} of {f['sent']}",
            "all",
            f["accepted"] == f["sent"],
        ),
        row(
            f"B2 HTTP p99 at {rate}",
            f"{http.get('p99_ms')} ms",
            f"<= {BURST_HTTP_P99_MS:g} ms",
            at_most(http.get("p99_ms"), BURST_HTTP_P99_MS),
        ),
        row(
            f"B2 2xx -> mail p99 at {rate}",
            f"{mail.get('p99_ms')} ms",
            f"<= {BURST_MAIL_P99_MS:g} ms",
            at_most(mail.get("p99_ms"), BURST_MAIL_P99_MS),
        ),
        row(
            f"B4 relay lag commit -> confirm p99 at {rate}",
            f"{lag} ms",
            f"<= {RELAY_LAG_P99_MS:g} ms",
            at_most(lag, RELAY_LAG_P99_MS),
        ),
        *latency_rows(f, rate)[2:],
    ]


def memory_rows(phases: dict[str, Any]) -> list[dict[str, Any]]:
    peaks: dict[str, float] = {}
    for f in phases.values():
        for name, mb in f["rss_peak_mb"].items():
            peaks[name] = max(peaks.get(name, 0.0), mb)
    rows = []
    for name, mb in sorted(peaks.items()):
        limit = RSS_TARGETS_MB.get(name)
        target = "none set" if limit is None else f"<= {limit:g} MB"
        rows.append(
            row(f"B7 peak RSS, {name}", f"{mb} MB", target, None if limit is None else mb <= limit)
        )
    return rows


def summary_rows(phases: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if "steady" in phases:
        rows += steady_rows(phases["steady"])
    if "burst" in phases:
        rows += burst_rows(phases["burst"])
    return rows + memory_rows(phases)


def failures(phases: dict[str, Any]) -> list[str]:
    """Lost or duplicated notifications: the benchmark's result is void with any."""
    found = []
    for name, f in phases.items():
        for kind, loss in f["losses"].items():
            if loss["count"]:
                found.append(
                    f"{name}: {loss['count']} {kind.replace('_', ' ')} (e.g. {loss['examples']})"
                )
    return found


def text(report: dict[str, Any]) -> str:
    lines = [
        f"B2 end to end ({report['commit']}, {report['date']}; {report['settings']['runs_text']})"
    ]
    for r in report["summary"]:
        lines.append(f"  {r['what']:<48} {r['figure']:<28} {target_cell(r)}")
    for phase, f in report["figures"].items():
        by_role = f.get("postgresql_cpu_ms_per_rsvp_by_role") or {}
        if by_role:
            shares = ", ".join(f"{role} {ms}" for role, ms in by_role.items())
            lines.append(f"  {phase}: PostgreSQL ms per RSVP by role: {shares}")
    return "\n".join(lines)


def plot(records: list[PhaseRecord], results: Path) -> list[Path]:
    """``b2_throughput.png`` (per second) and ``b2_latency_cdf.png``, one column per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return []
    throughput, axes = plt.subplots(1, len(records), figsize=(6 * len(records), 4), squeeze=False)
    for ax, record in zip(axes[0], records, strict=True):
        ok = accepted(record)
        origin = min(a["scheduled"] for a in record.answers)
        series = {
            "RSVPs accepted": per_second((a["answered"] for a in ok), origin),
            "mails": per_second((t for ts in record.mails.values() for t in ts), origin),
            "pushes": per_second((t for ts in record.pushes.values() for t in ts), origin),
        }
        for label, counts in series.items():
            ax.plot(range(len(counts)), counts, label=label)
        ax.set(title=f"{record.name}: {record.rate:g} RSVP/s offered", xlabel="s", ylabel="per s")
        ax.legend()
    cdf, axes = plt.subplots(1, len(records), figsize=(6 * len(records), 4), squeeze=False)
    for ax, record in zip(axes[0], records, strict=True):
        curves = {
            "HTTP": [a["latency_ms"] for a in record.answers],
            "2xx -> mail": delivery_ms(record, record.mails),
            "2xx -> push": delivery_ms(record, record.pushes),
        }
        for label, values in curves.items():
            values = sorted(v for v in values if v > 0)
            if values:
                ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
        ax.set_xscale("log")
        ax.set(title=f"{record.name}: {record.rate:g} RSVP/s", xlabel="ms", ylabel="fraction")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    paths = [results / "b2_throughput.png", results / "b2_latency_cdf.png"]
    for figure, path in zip((throughput, cdf), paths, strict=True):
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return paths
