"""A process that runs checks creates their ``sluice_check_runs_total`` and ``sluice_check_duration_seconds`` series at
zero when it starts, so a check's first run is an increase Prometheus can see (the data-quality dashboard's panels)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

import checks_stack
from helpers import load
from sluice.lake.registry import open_lake
from sluice.runtime.execute import ObjectExecutor


def runs(check: str, status: str, project: str) -> float | None:
    obj, kind, severity = checks_stack.DECLARED[check]
    labels = {"project": project, "object": obj, "check": check, "kind": kind, "severity": severity, "status": status}
    return REGISTRY.get_sample_value("sluice_check_runs_total", labels)


def test_a_starting_executor_creates_every_check_s_series_at_zero(tmp_path: Path) -> None:
    folder = checks_stack.write_project(tmp_path / "quality")
    name = f"series_at_zero_{tmp_path.name}"  # a project name no other test's checks have counted
    yaml = folder / "sluice.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace("name: quality", f"name: {name}"), encoding="utf-8")
    project = load(folder)
    assert runs("not_null_order_id", "failed", name) is None  # nothing before a process starts
    ObjectExecutor(project, open_lake(project))
    for check in checks_stack.DECLARED:
        assert [runs(check, status, name) for status in ("passed", "failed", "error")] == [0.0, 0.0, 0.0], check
    for kind in {kind for _, kind, _ in checks_stack.DECLARED.values()}:
        labels = {"project": name, "kind": kind}
        assert REGISTRY.get_sample_value("sluice_check_duration_seconds_count", labels) == 0.0, kind
    other = {"project": name, "object": "orders", "check": "unique_order_id", "kind": "unique", "severity": "error"}
    assert REGISTRY.get_sample_value("sluice_check_runs_total", {**other, "status": "failed"}) is None  # not declared
