"""``sluice sync status`` of real processes: split roles on Kafka, one killed with -9 (a trial's finding)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.cdc.test_sync_e2e import SRC, my, pg, project, sluice, sync_name, wait_for

pytestmark = [pytest.mark.mysql, pytest.mark.postgres, pytest.mark.kafka]
__all__ = ["my", "pg"]  # the fixtures of test_sync_e2e (MariaDB with emp and dept, PostgreSQL), used by name


def status_of(folder: Path) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(sluice("sync", "status", str(folder), "--json").stdout)
    return answer


def test_a_killed_apply_next_to_a_running_capture_is_shown_not_running(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, kafka_ns_url: str, tmp_path: Path
) -> None:
    """``--role capture`` and ``--role apply``, the apply killed with -9: status said ``streaming (one-way, pid <the
    dead apply>)``, its tables ``streaming`` with lag 0.0; now it names the role that does not run."""
    name = sync_name()
    folder = project(
        tmp_path,
        f"connections:\n  my: {mysql_db_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: {name}, source: my, target: pg, tables: [emp, dept]}}\n",
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "sluice", "sync", str(folder), "--bus", kafka_ns_url, "--role"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    capture = subprocess.Popen([*command, "capture"], **quiet)  # type: ignore[call-overload]
    apply = subprocess.Popen([*command, "apply"], **quiet)  # type: ignore[call-overload]
    try:
        files = [folder / ".sluice" / "syncs" / f"{name}.{role}.json" for role in ("capture", "apply")]
        wait_for(lambda: all(file.exists() for file in files), 60)  # both run: each wrote its status
        apply.send_signal(signal.SIGKILL)
        apply.wait(30)
        status = status_of(folder)
        shown = sluice("sync", "status", str(folder)).stdout
        assert capture.poll() is None, "the capture process stopped"
    finally:
        for proc in (apply, capture):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(60)
    assert status["state"] == "streaming" and status["pid"] == capture.pid and not status.get("gone"), status
    assert status["roles_not_running"] == ["apply:pg"], status
    assert {p["pid"]: (p["running"], p.get("gone")) for p in status["processes"]} == {
        capture.pid: (True, False),
        apply.pid: (False, True),
    }
    for table in status["tables"]:
        assert table["state"] == "stopped" and "lag_s" not in table, table
        assert table["note"] == f"apply not running: pid {apply.pid} gone", table
    assert f"capture running, pid {capture.pid}; apply not running: pid {apply.pid} gone" in shown, shown
    # Both ended now: nothing reads streaming (the capture stopped cleanly, the apply was killed).
    after = status_of(folder)
    assert after["state"] == "stopped" and after["gone"] and after["pid"] == apply.pid, after
    assert {t["state"] for t in after["tables"]} <= {"stopped", "snapshotting"}, after
