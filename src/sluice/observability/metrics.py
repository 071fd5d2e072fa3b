"""Prometheus metrics of the coordinator and workers (``sluice_`` prefix, units in names).

Exposed with ``--metrics-port`` on ``sluice run`` and ``sluice worker``, and at ``GET /metrics`` of ``sluice serve``.
Every metric defined here is listed in ``docs/metrics.md`` and used by the dashboards in ``deploy/grafana``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from sluice.bus import names
from sluice.errors import SluiceError

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

EVENTS_PUBLISHED = Counter("sluice_events_published_total", "Events published on the bus, by event type.", ["type"])
EVENTS_CONSUMED = Counter("sluice_events_consumed_total", "Events consumed from the bus, by event type.", ["type"])
OBJECTS = Counter("sluice_objects_total", "Objects that reached a final status, by stage and status.", ["stage", "status"])
OBJECT_DURATION = Histogram(
    "sluice_object_duration_seconds", "Time to process one object attempt.", ["stage"], buckets=_DURATION_BUCKETS
)
RUN_DURATION = Histogram("sluice_run_duration_seconds", "Time from RunStarted to RunFinished.", buckets=_DURATION_BUCKETS)
ROWS = Counter("sluice_rows_processed_total", "Rows written by objects, by stage.", ["stage"])
RETRIES = Counter("sluice_retries_total", "Object attempts retried after a failure, by stage.", ["stage"])
ACTIVE_RUNS = Gauge("sluice_active_runs", "Runs in progress in this process.")
RUNS = Counter("sluice_runs_total", "Finished runs by final status.", ["status"])

# The server (sluice serve).
HTTP_REQUESTS = Counter(
    "sluice_http_requests_total",
    "HTTP requests served, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "sluice_http_request_duration_seconds",
    "Time to answer an HTTP request (to the first byte for streams), by route template and method.",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SSE_CLIENTS = Gauge("sluice_sse_clients", "Clients connected to GET /events/stream.")
SSE_EVENTS_SENT = Counter("sluice_sse_events_sent_total", "Events written to SSE clients (one per client and event).")

# The bus.
BUS_MESSAGES_PRODUCED = Counter("sluice_bus_messages_produced_total", "Messages written to the bus, by topic.", ["topic"])
BUS_MESSAGES_CONSUMED = Counter(
    "sluice_bus_messages_consumed_total", "Messages delivered to consumers, by consumer group and topic.", ["group", "topic"]
)
BUS_PRODUCE_ERRORS = Counter("sluice_bus_produce_errors_total", "Failed writes to the bus, by topic.", ["topic"])
BUS_CONSUME_ERRORS = Counter("sluice_bus_consume_errors_total", "Errors while consuming, by consumer group.", ["group"])
BUS_CONSUMER_LAG = Gauge(
    "sluice_bus_consumer_lag_messages",
    "Messages not yet committed by a consumer group, by group, topic and partition (sampled).",
    ["group", "topic", "partition"],
)
BUS_REBALANCES = Counter(
    "sluice_bus_rebalances_total", "Consumer-group rebalances seen by this process, by group and kind.", ["group", "kind"]
)
DEAD_LETTERS = Counter(
    "sluice_bus_dead_letters_total",
    "Messages that could not be parsed, sent to the dead-letter topic, by source topic.",
    ["topic"],
)

# Streaming objects (sluice stream, sluice serve --stream), by object name.
STREAM_RECORDS = Counter(
    "sluice_stream_records_total", "Records consumed by streaming objects and committed to the lake, by object.", ["object"]
)
STREAM_BYTES = Counter(
    "sluice_stream_bytes_total", "Bytes of record values committed to the lake by streaming objects, by object.", ["object"]
)
STREAM_LAG = Gauge(
    "sluice_stream_lag_records",
    "Records between a streaming object's committed offset and the partition's high watermark, by object, topic and partition.",
    ["object", "topic", "partition"],
)
STREAM_BATCH_DURATION = Histogram(
    "sluice_stream_batch_duration_seconds",
    "Time to decode, transform and commit one micro-batch, by object.",
    ["object"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
STREAM_LATE_RECORDS = Counter(
    "sluice_stream_late_records_total",
    "Records older than a windowed streaming object's watermark (dropped or sent to the side output), by object.",
    ["object"],
)
STREAM_LAST_COMMIT = Gauge(
    "sluice_stream_last_commit_timestamp_seconds", "Unix time of a streaming object's last committed micro-batch.", ["object"]
)

# Kafka sources (users' topics).
KAFKA_DEAD_LETTERS = Counter(
    "sluice_kafka_dead_letters_total",
    "Records of users' Kafka topics that could not be decoded, sent to their dead-letter topic, by object and source topic.",
    ["object", "topic"],
)


# Data-quality checks (docs/checks.md), by project, object and check.
CHECK_RUNS = Counter(
    "sluice_check_runs_total",
    "Data-quality checks run on objects' outputs, by project, object, check, kind, severity and status.",
    ["project", "object", "check", "kind", "severity", "status"],
)
CHECK_FAILING_ROWS = Gauge(
    "sluice_check_failing_rows",
    "Rows breaking a data-quality check at its last run, by project, object and check.",
    ["project", "object", "check"],
)
CHECK_DURATION = Histogram(
    "sluice_check_duration_seconds",
    "Time to run one data-quality check where the data is, by project and kind.",
    ["project", "kind"],
    buckets=_DURATION_BUCKETS,
)


def group_label(group: str) -> str:
    """The ``group`` label of a consumer group: every run's coordinator group counts as ``coordinator``,
    so the number of series stays bounded however many runs a process sees."""
    return "coordinator" if names.is_run_group(group) else group


@lru_cache(maxsize=1024)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, cached: label look-ups are on the hot path of every event."""
    return metric.labels(*labels)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` from a background thread. Raises SluiceError when it cannot listen."""
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise SluiceError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose another --metrics-port (or --metrics-host)"
        ) from None
