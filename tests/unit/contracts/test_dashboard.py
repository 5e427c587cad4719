"""The dashboard JSON read as data: its queries parse, its panels are the ones operators need."""

from __future__ import annotations

import pytest

from devtools.dashboard import exported_names, load, metric_names, queried_metrics


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "sum by (job) (rate(process_cpu_seconds_total[$__rate_interval]))",
            {"process_cpu_seconds_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le, route) "
            "(rate(http_request_duration_seconds_bucket[1m])))",
            {"http_request_duration_seconds_bucket"},
        ),
        (
            'sum(rate(cache_lookups_total{result="hit"}[1m])) / sum(rate(cache_lookups_total[1m]))',
            {"cache_lookups_total"},
        ),
        (
            'sum by (queue) (q_ready{queue!~".*retry.*"}) or on (queue) other_one',
            {"q_ready", "other_one"},
        ),
        ("rate(erlang_runtime_ms[5m]) / 1000", {"erlang_runtime_ms"}),
    ],
)
def test_metric_names_are_the_series_an_expression_selects(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_families_that_have_no_sample_yet() -> None:
    exposition = "\n".join(
        [
            "# HELP messages_retried_total Messages sent to a delay queue.",
            "# TYPE messages_retried counter",
            "# TYPE handler_duration_seconds histogram",
            'handler_duration_seconds_bucket{le="0.1"} 3.0',
            "# TYPE rabbitmq_detailed_channel_messages_acked_total counter",
            "up 1",
        ]
    )

    names = exported_names(exposition)

    assert {"messages_retried_total", "handler_duration_seconds_bucket", "up"} <= names
    assert "rabbitmq_detailed_channel_messages_acked_total" in names
    assert "handler_duration_seconds_count" in names


def test_the_dashboard_answers_what_an_operator_asks_first() -> None:
    panels = load()
    queried = queried_metrics(panels)

    # which process saturates first, and the queue that backs up behind it
    assert {"process_cpu_seconds_total", "rabbitmq_detailed_queue_messages_ready"} <= queried
    assert {"http_requests_total", "outbox_publish_lag_seconds_bucket"} <= queried
    assert {"messages_retried_total", "messages_dead_lettered_total"} <= queried
    assert {
        "db_pool_connections",
        "cache_lookups_total",
        "handler_duration_seconds_bucket",
    } <= queried
    assert len({panel.title for panel in panels}) == len(panels)
