"""A process that runs checks creates their ``sluice_check_runs_total`` and ``sluice_check_duration_seconds`` series at
zero when it starts, so a check's first run is an increase Prometheus can see (the data-quality dashboard's panels)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from helpers import load, write_yaml
from sluice.lake.registry import open_lake
from sluice.runtime.execute import ObjectExecutor

PROJECT = """name: series_at_zero
objects:
  - id: 1001
    name: orders
    source: {type: csv, path: orders.csv}
    checks:
      - not_null: {columns: [order_id]}
      - accepted_values: {column: status, values: [paid]}
        severity: warn
  - {id: 1002, name: plain, source: {type: csv, path: orders.csv}}
"""


def runs(check: str, kind: str, severity: str, status: str, obj: str = "orders") -> float | None:
    labels = {"project": "series_at_zero", "object": obj, "check": check, "kind": kind, "severity": severity}
    return REGISTRY.get_sample_value("sluice_check_runs_total", {**labels, "status": status})


def test_a_starting_executor_creates_every_check_s_series_at_zero(tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text("order_id,status\n1,paid\n", encoding="utf-8")
    write_yaml(tmp_path, PROJECT)
    project = load(tmp_path)
    assert runs("not_null_order_id", "not_null", "error", "failed") is None  # nothing before a process starts
    ObjectExecutor(project, open_lake(project))
    for status in ("passed", "failed", "error"):
        assert runs("not_null_order_id", "not_null", "error", status) == 0.0
        assert runs("accepted_values_status", "accepted_values", "warn", status) == 0.0
    assert runs("not_null_order_id", "not_null", "error", "failed", obj="plain") is None  # no checks, no series
    for kind in ("not_null", "accepted_values"):
        labels = {"project": "series_at_zero", "kind": kind}
        assert REGISTRY.get_sample_value("sluice_check_duration_seconds_count", labels) == 0.0
