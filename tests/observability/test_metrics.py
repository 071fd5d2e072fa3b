"""Prometheus metrics move with the run, and are served over HTTP by run and worker processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY

from helpers import seed_project
from sluice.project.load import load_project
from sluice.runtime.run import RunOptions, run_project


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_run_updates_metrics(tmp_path: Path) -> None:
    project = load_project(seed_project(tmp_path))
    before = {
        "loaded": value("sluice_objects_total", stage="standardize", status="loaded"),
        "failed": value("sluice_objects_total", stage="standardize", status="failed"),
        "skipped": value("sluice_objects_total", stage="application", status="skipped"),
        "retries": value("sluice_retries_total", stage="standardize"),
        "ready": value("sluice_events_published_total", type="ObjectReady"),
        "consumed": value("sluice_events_consumed_total", type="ObjectLoaded"),
        "runs": value("sluice_run_duration_seconds_count"),
        "durations": value("sluice_object_duration_seconds_count", stage="ingest"),
        "active": value("sluice_active_runs"),
    }
    run_project(project, RunOptions(fail=frozenset({2005})))
    assert value("sluice_objects_total", stage="standardize", status="loaded") - before["loaded"] == 7
    assert value("sluice_objects_total", stage="standardize", status="failed") - before["failed"] == 1
    assert value("sluice_objects_total", stage="application", status="skipped") - before["skipped"] == 2
    assert value("sluice_retries_total", stage="standardize") - before["retries"] == 2
    assert value("sluice_events_published_total", type="ObjectReady") - before["ready"] == 16 + 3
    assert value("sluice_events_consumed_total", type="ObjectLoaded") - before["consumed"] == 16
    assert value("sluice_run_duration_seconds_count") - before["runs"] == 1
    assert value("sluice_object_duration_seconds_count", stage="ingest") - before["durations"] == 5
    assert value("sluice_active_runs") == before["active"]  # other tests' servers may hold runs in this process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_run_serves_metrics_over_http(tmp_path: Path) -> None:
    port = free_port()
    path = seed_project(tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sluice",
            "run",
            str(path),
            "--json",
            "--simulate",
            "--delay-scale",
            "0.3",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 'sluice_objects_total{stage="ingest",status="loaded"}' not in body:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    body = response.read().decode()
            except OSError:
                pass
            time.sleep(0.1)
        assert 'sluice_objects_total{stage="ingest",status="loaded"}' in body
        assert "sluice_events_published_total" in body
        assert "sluice_active_runs 1.0" in body
    finally:
        process.wait(60)
    assert process.returncode == 0
