"""B2's figures from what one phase recorded: latencies, losses, CPU per RSVP, relay lag.

Pure functions over plain data, so the arithmetic can be read (and checked)
apart from the processes that produced the data.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PhaseRecord:
    """What one load phase left behind; times are unix seconds."""

    name: str
    rate: float
    seconds: float
    answers: list[dict[str, Any]]  #: the load generator's lines
    mails: dict[str, list[float]]  #: attendee -> arrival of each mail to them
    pushes: dict[str, list[float]]  #: attendee -> arrival of each push to them
    cpu_s: dict[str, float]  #: CPU seconds per process (group) over the window
    window_s: float  #: from the first scheduled RSVP to the last notification (+ settle)
    rss_peak_bytes: dict[str, int] = field(default_factory=dict)
    lag_buckets: dict[float, float] = field(default_factory=dict)  #: le -> count in the phase
    #: CPU seconds of this run's PostgreSQL backends per role (each service logs in as its own)
    database_cpu_s: dict[str, float] = field(default_factory=dict)


def percentiles(values: Iterable[float]) -> dict[str, float | int]:
    data = sorted(values)
    if not data:
        return {"n": 0}
    cuts = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else data * 99
    return {
        "n": len(data),
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(data[-1], 1),
    }


def accepted(record: PhaseRecord) -> list[dict[str, Any]]:
    return [a for a in record.answers if 200 <= a["status"] < 300]


def delivery_ms(record: PhaseRecord, arrivals: Mapping[str, list[float]]) -> list[float]:
    """From each 2xx to its first notification, for those that arrived."""
    return [
        (min(arrivals[a["user"]]) - a["answered"]) * 1000
        for a in accepted(record)
        if arrivals.get(a["user"])
    ]


def losses(record: PhaseRecord) -> dict[str, list[str]]:
    """Accepted RSVPs with no mail / no push, and attendees who got more than one."""
    users = [a["user"] for a in accepted(record)]
    return {
        "lost_mail": [u for u in users if not record.mails.get(u)],
        "lost_push": [u for u in users if not record.pushes.get(u)],
        "duplicated_mail": [u for u in users if len(record.mails.get(u, ())) > 1],
        "duplicated_push": [u for u in users if len(record.pushes.get(u, ())) > 1],
    }


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket that holds rank q."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def per_second(times: Iterable[float], origin: float) -> list[int]:
    counts = Counter(int(t - origin) for t in times if t >= origin)
    return [counts.get(s, 0) for s in range(max(counts, default=-1) + 1)]


def figures(record: PhaseRecord) -> dict[str, Any]:
    ok = accepted(record)
    statuses = Counter(str(a["status"]) for a in record.answers)
    cpu_ms = {name: 1000 * s / max(len(ok), 1) for name, s in record.cpu_s.items()}
    lost = losses(record)
    origin = min((a["scheduled"] for a in record.answers), default=0.0)
    lag_p99 = histogram_quantile(0.99, record.lag_buckets)
    lag_p50 = histogram_quantile(0.5, record.lag_buckets)
    return {
        "offered_rate_per_s": record.rate,
        "seconds": record.seconds,
        "sent": len(record.answers),
        "accepted": len(ok),
        "statuses": dict(statuses),
        "http_latency": percentiles(a["latency_ms"] for a in record.answers),
        # how late the load generator itself started its requests: large, and the
        # latency above is the generator's backlog, not the system's
        "generator_behind": percentiles(
            (a["started"] - a["scheduled"]) * 1000 for a in record.answers if "started" in a
        ),
        "to_mail_latency": percentiles(delivery_ms(record, record.mails)),
        "to_push_latency": percentiles(delivery_ms(record, record.pushes)),
        "cpu_ms_per_rsvp": {k: round(v, 3) for k, v in sorted(cpu_ms.items())},
        "cpu_ms_per_rsvp_total": round(sum(cpu_ms.values()), 3),
        "cpu_window_s": round(record.window_s, 2),
        # the "postgresql" share above by the role that asked (live backends of this run's
        # database only: a lower bound, and free of other databases on the same server)
        "postgresql_cpu_ms_per_rsvp_by_role": {
            role: round(1000 * s / max(len(ok), 1), 3)
            for role, s in sorted(record.database_cpu_s.items())
        },
        "rss_peak_mb": {k: round(v / 2**20, 1) for k, v in sorted(record.rss_peak_bytes.items())},
        "relay_lag_ms": {
            "p50": None if lag_p50 is None else round(lag_p50 * 1000, 2),
            "p99": None if lag_p99 is None else round(lag_p99 * 1000, 2),
            "published": int(max(record.lag_buckets.values(), default=0)),
            "source": "relay /metrics outbox_publish_lag_seconds (histogram_quantile)",
        },
        "lost": len(lost["lost_mail"]) + len(lost["lost_push"]),
        "duplicated": len(lost["duplicated_mail"]) + len(lost["duplicated_push"]),
        "losses": {k: {"count": len(v), "examples": v[:5]} for k, v in lost.items()},
        "per_second": {
            "accepted": per_second((a["answered"] for a in ok), origin),
            "mails": per_second((t for ts in record.mails.values() for t in ts), origin),
            "pushes": per_second((t for ts in record.pushes.values() for t in ts), origin),
        },
    }
