"""``sluice schedules PATH [--json]`` and ``sluice scheduler PATH`` (started, fires, stops on SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers import wait_for, write_yaml

from alert_receivers import Hook
from sluice.state.base import TickRecord
from sluice.state.sqlite import SqliteStateStore

PROJECT = """
name: shop
objects:
  - {id: 1001}
  - {id: 2001, parents: [1001], tags: [daily]}
schedules:
  nightly: {cron: "0 2 * * *", timezone: Europe/Paris, tags: [daily], catch_up: none}
  every_minute: {cron: "* * * * *"}
  paused: {cron: "0 3 * * *", enabled: false}
"""


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=120, check=False)


def test_schedules_json_lists_next_fire_times_and_the_last_tick(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, PROJECT)
    store = SqliteStateStore(tmp_path / ".sluice" / "state.db")
    store.record_ticks([TickRecord("shop", "nightly", "2026-01-01T01:00:00+00:00", "missed", 1.0, reason="catch_up: none")])
    store.close()
    result = sluice("schedules", str(path), "--json", "--count", "2")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    by_name = {item["name"]: item for item in view["schedules"]}
    assert list(by_name) == ["nightly", "every_minute", "paused"]
    nightly = by_name["nightly"]
    assert (nightly["cron"], nightly["timezone"], nightly["targets"], nightly["catch_up"]) == (
        "0 2 * * *",
        "Europe/Paris",
        [2001],
        "none",
    )
    assert len(nightly["next"]) == 2 and all(t[11:19] in ("01:00:00", "00:00:00") for t in nightly["next"])  # 02:00 Paris
    assert nightly["last_tick"]["status"] == "missed" and nightly["last_tick"]["reason"] == "catch_up: none"
    assert nightly["last_run"] is None and by_name["every_minute"]["targets"] is None
    assert by_name["paused"]["enabled"] is False and by_name["paused"]["next"] == []
    assert view["lease"] is None
    text = sluice("schedules", str(path))
    assert text.returncode == 0 and "paused (disabled): 0 3 * * * UTC, all objects" in text.stdout


def test_the_scheduler_fires_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path, PROJECT.replace("catch_up: none}", "catch_up: none}\n  now: {cron: '* * * * *', catch_up: latest}")
    )
    store = SqliteStateStore(tmp_path / ".sluice" / "state.db")
    # a tick two minutes ago: the scheduler runs the newest due tick at once (catch_up: latest)
    before = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    store.record_ticks([TickRecord("shop", "now", before.isoformat(), "fired", 1.0)])
    store.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sluice", "scheduler", str(path)], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []

        def fired() -> bool:
            line = process.stderr.readline()  # type: ignore[union-attr]
            lines.append(line)
            return line.startswith("fired now ")

        wait_for(fired, 60, "a fired line")
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, "".join(lines) + rest
    assert "scheduling nightly, now, every_minute of project shop" in lines[0]
    assert rest.rstrip().endswith("scheduler stopped")
    store = SqliteStateStore(tmp_path / ".sluice" / "state.db")
    (tick,) = [t for t in store.ticks("shop", "now", limit=5) if t.status == "fired" and t.run_id]
    assert store.lease("shop") is None  # released on the way out
    store.close()
    assert tick.run_id in "".join(lines)


def test_the_scheduler_sends_the_alerts_of_the_runs_it_starts(tmp_path: Path, hook: Hook) -> None:
    """``sluice scheduler`` hosts the alert service: a scheduled run that fails reaches a real webhook receiver."""
    (tmp_path / "orders.csv").write_text("id\n1\n", encoding="utf-8")
    (tmp_path / "jobs.py").write_text("def broken(orders):\n    raise RuntimeError('the ledger is closed')\n", encoding="utf-8")
    path = write_yaml(
        tmp_path,
        f"""
name: shop
retry: {{attempts: 1}}
objects:
  - {{id: 1001, name: orders, source: {{type: csv, path: orders.csv}}}}
  - {{id: 2001, name: ledger, parents: [1001], python: "jobs:broken"}}
schedules:
  now: {{cron: '* * * * *', catch_up: latest}}
alerts:
  channels:
    oncall: {{type: webhook, url: "{hook.url}/oncall"}}
  rules:
    - {{on: [run_failed], channels: [oncall], throttle: 0}}
""",
    )
    store = SqliteStateStore(tmp_path / ".sluice" / "state.db")
    before = (datetime.now(UTC) - timedelta(minutes=2)).replace(second=0, microsecond=0)
    store.record_ticks([TickRecord("shop", "now", before.isoformat(), "fired", 1.0)])  # the next tick is due at once
    store.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "scheduler.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "sluice", "scheduler", str(path)], stderr=log, text=True, env=env)
    try:
        wait_for(lambda: bool(hook.posts) or process.poll() is not None, 90, "the run_failed alert at the webhook")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = (tmp_path / "scheduler.log").read_text()
    assert process.returncode == 0, output
    assert "fired now " in output
    (path_posted, _, body) = hook.posts[0]
    assert path_posted == "/oncall", output
    assert (body["type"], body["trigger"], body["project"], body["schedule"]) == ("sluice.alert", "run_failed", "shop", "now")
    assert body["run_id"] in output and body["logical_date"], body
