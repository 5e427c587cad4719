"""Prometheus metrics of one consumer runtime, in a registry of its own.

A registry per runtime (rather than the global default) lets tests and a
single process run several runtimes side by side without name clashes.
Every series is labelled with ``consumer`` (the runtime's name) and ``queue``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.held = Counter(
            "messages_held_total",
            "Times a delivery was held because what its work needs (the inbox) was away.",
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

    def for_queue(self, consumer: str, queue: str) -> QueueMetrics:
        """The series of one subscription, bound once (``labels()`` per message is not free).

        Binding also exports them at zero from the start, so ``rate()`` has a
        series to work on before the first failure.
        """
        labels = {"consumer": consumer, "queue": queue}
        return QueueMetrics(
            handled=self.handled.labels(**labels),
            retried=self.retried.labels(**labels),
            duplicates=self.duplicates.labels(**labels),
            held=self.held.labels(**labels),
            handler_duration=self.handler_duration.labels(**labels),
            in_flight=self.in_flight.labels(**labels),
            _dead_lettered=self.dead_lettered,
            _labels=labels,
        )

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, for ``GET /metrics``."""
        return generate_latest(self.registry)


@dataclass
class QueueMetrics:
    """The series of one (consumer, queue), already labelled."""

    handled: Counter
    retried: Counter
    duplicates: Counter
    held: Counter
    handler_duration: Histogram
    in_flight: Gauge
    _dead_lettered: Counter
    _labels: dict[str, str]

    def dead_lettered(self, reason: str) -> Counter:
        return self._dead_lettered.labels(**self._labels, reason=reason)
