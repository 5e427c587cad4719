"""Prometheus metrics of one consumer runtime, in a registry of its own.

A registry per runtime (rather than the global default) lets tests and a
single process run several runtimes side by side without name clashes.
Every series is labelled with ``consumer`` (the runtime's name) and ``queue``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LABELS = ("consumer", "queue")


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.handled = Counter(
            "messages_handled_total",
            "Messages whose handler succeeded and whose follow-ups were published.",
            _LABELS,
            registry=self.registry,
        )
        self.retried = Counter(
            "messages_retried_total",
            "Messages sent to a delay queue for another attempt.",
            _LABELS,
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "messages_dead_lettered_total",
            "Messages the runtime dead-lettered, by fault reason.",
            (*_LABELS, "reason"),
            registry=self.registry,
        )
        self.duplicates = Counter(
            "messages_duplicate_total",
            "Messages found in the inbox: handled before, follow-ups republished.",
            _LABELS,
            registry=self.registry,
        )
        self.handler_duration = Histogram(
            "handler_duration_seconds",
            "Time spent in handlers, whatever their outcome.",
            _LABELS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "messages_in_flight",
            "Messages delivered and not yet acked or returned.",
            _LABELS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, for ``GET /metrics``."""
        return generate_latest(self.registry)
