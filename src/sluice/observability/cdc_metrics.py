"""Prometheus metrics of change-data capture (``sluice_cdc_`` prefix, units in names), labelled by sync and table.

The sync runtime updates them as it captures and applies; they are exposed where the sync runs: at
``GET /metrics`` of ``sluice serve --sync NAME``, and with ``--metrics-port`` of ``sluice sync``. Same
registry (prometheus-client's default) and conventions as :mod:`sluice.observability.metrics`; listed in
``docs/metrics.md`` and shown by ``deploy/grafana/dashboards/sluice-syncs.json``.

Labels: ``sync`` (the sync's name), ``table`` (the source table, ``namespace.name``), ``operation`` (the
names of :data:`sluice.cdc.events.OPERATION_NAMES`: snapshot, insert, update, delete, truncate).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from sluice.cdc.events import OPERATION_NAMES

LAG = Gauge(
    "sluice_cdc_lag_seconds",
    "Seconds from the source commit of the last applied change to its apply (idle: 0 while capture's heartbeats are"
    " recent, else the age of its last heartbeat).",
    ["sync", "table"],
)
CAPTURED = Counter(
    "sluice_cdc_changes_captured_total",
    "Row changes read from the source and published, by operation.",
    ["sync", "table", "operation"],
)
APPLIED = Counter(
    "sluice_cdc_changes_applied_total", "Row changes written to the target, by operation.", ["sync", "table", "operation"]
)
CONFLICTS = Counter("sluice_cdc_conflicts_total", "Changes of a key changed on both sides (direction: both).", ["sync", "table"])
DEAD_LETTERS = Counter(
    "sluice_cdc_dead_letters_total", "Row changes the target refused, put in the dead letters.", ["sync", "table"]
)
INVALID_DATES = Counter(
    "sluice_cdc_invalid_dates_total",
    "Zero or invalid dates (MariaDB 0000-00-00, a zero DATETIME) capture turned into NULL, in snapshot and stream.",
    ["sync", "table"],
)
SNAPSHOT_ROWS = Counter("sluice_cdc_snapshot_rows_total", "Rows read by the table's snapshot.", ["sync", "table"])
SNAPSHOT_PROGRESS = Gauge(
    "sluice_cdc_snapshot_progress_ratio",
    "Share of the table's snapshot done, 0 to 1 (rows read over the estimate taken when it started; 1 when done).",
    ["sync", "table"],
)
TABLE_STOPPED = Gauge(
    "sluice_cdc_table_stopped", "1 while the table is stopped by an error (the others go on), else 0.", ["sync", "table"]
)


def register_table(sync: str, table: str) -> None:
    """Create every series of ``table`` at zero, so dashboards show the table before its first change."""
    LAG.labels(sync, table)
    CONFLICTS.labels(sync, table)
    DEAD_LETTERS.labels(sync, table)
    INVALID_DATES.labels(sync, table)
    SNAPSHOT_ROWS.labels(sync, table)
    SNAPSHOT_PROGRESS.labels(sync, table)
    TABLE_STOPPED.labels(sync, table)
    for operation in OPERATION_NAMES.values():
        CAPTURED.labels(sync, table, operation)
        APPLIED.labels(sync, table, operation)
