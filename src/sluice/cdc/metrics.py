"""Prometheus metrics of change-data capture (``sluice_cdc_`` prefix; listed in ``docs/cdc/README.md``).

Labels: ``sync`` (its name), ``table`` (the source table, ``namespace.name``), ``operation`` (``snapshot``,
``insert``, ``update``, ``delete``, ``truncate``; :data:`~sluice.cdc.events.OPERATION_NAMES`).
Exposed by ``sluice sync --metrics-port`` and by ``sluice serve``'s ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LAG = Gauge(
    "sluice_cdc_lag_seconds",
    "Seconds from the source commit of the last applied change to now (0 when caught up and idle).",
    ["sync", "table"],
)
CAPTURED = Counter("sluice_cdc_changes_captured_total", "Row changes published by capture.", ["sync", "table", "operation"])
APPLIED = Counter("sluice_cdc_changes_applied_total", "Row changes written by apply.", ["sync", "table", "operation"])
CONFLICTS = Counter("sluice_cdc_conflicts_total", "Both-ways conflicts resolved.", ["sync", "table"])
DEAD_LETTERS = Counter("sluice_cdc_dead_letters_total", "Row changes apply put in the dead letters.", ["sync", "table"])
SNAPSHOT_ROWS = Counter("sluice_cdc_snapshot_rows_total", "Rows read by snapshots.", ["sync", "table"])
SNAPSHOT_PROGRESS = Gauge(
    "sluice_cdc_snapshot_progress_ratio", "Rows read by the table's snapshot over its estimated rows (0..1).", ["sync", "table"]
)
TABLE_ERRORS = Gauge("sluice_cdc_table_stopped", "1 while a table is stopped by an error.", ["sync", "table"])
