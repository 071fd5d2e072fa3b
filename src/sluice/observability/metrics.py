"""Prometheus metrics of the coordinator and workers (``sluice_`` prefix, units in names).

Exposed with ``--metrics-port`` on ``sluice run`` and ``sluice worker``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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


@lru_cache(maxsize=1024)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, cached: label look-ups are on the hot path of every event."""
    return metric.labels(*labels)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``host:port`` from a background thread."""
    start_http_server(port, addr=host)
