"""``sluice sensors PATH``: the sensors with their cursors, and ``--poll`` running what they ask for."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from helpers import sluice_cli, wait_for, write_yaml
from sluice.state.sqlite import SqliteStateStore

PROJECT = """
name: sense
objects:
  - {id: 1001, name: raw_a}
  - {id: 2001, name: clean_a, parents: [1001]}
sensors:
  landing: {type: files, path: 'in/*.csv', targets: [raw_a], min_interval: 1h}
  later: {type: files, path: 'other/*', enabled: false}
"""


def test_poll_runs_what_a_sensor_asks_for_once_per_min_interval(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "sense", PROJECT)
    (tmp_path / "sense" / "in").mkdir()
    (tmp_path / "sense" / "in" / "a.csv").write_text("x\n")
    listed = json.loads(sluice_cli("sensors", str(path), "--json").stdout)
    assert [(s["name"], s["type"], s["enabled"], s["fired_at"]) for s in listed] == [
        ("landing", "files", True, None),
        ("later", "files", False, None),
    ]
    polled = sluice_cli("sensors", str(path), "--poll", "--json")
    assert polled.returncode == 0, polled.stderr
    answer = json.loads(polled.stdout)
    [started] = answer["started"]
    assert started.startswith("sensor landing fired: run ") and started.endswith(" succeeded")
    landing = answer["sensors"][0]
    assert landing["cursor"]["seen"].keys() == {"in/a.csv"} and landing["last_key"].startswith("landing@")
    (tmp_path / "sense" / "in" / "b.csv").write_text("y\n")
    assert json.loads(sluice_cli("sensors", str(path), "--poll", "--json").stdout)["started"] == []  # within 1h
    runs = json.loads(sluice_cli("runs", str(path), "--schedule", "landing", "--json").stdout)
    assert [(r["trigger"], r["schedule"]) for r in runs] == [("sensor", "landing")]
    text = sluice_cli("sensors", str(path)).stdout
    assert "landing" in text and "every >= 3600s" in text and "later" in text and "(disabled)" in text


def test_sluice_scheduler_polls_a_sensor_runs_it_once_and_saves_its_cursor(tmp_path: Path) -> None:
    text = PROJECT.replace("min_interval: 1h", "min_interval: 0s") + "history: {keep: 30d}\n"
    path = write_yaml(tmp_path / "sense", text)
    (tmp_path / "sense" / "in").mkdir()
    (tmp_path / "sense" / "in" / "a.csv").write_text("x\n")
    log = tmp_path / "scheduler.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "sluice", "scheduler", str(path)], stdout=out, stderr=subprocess.STDOUT)
    store = SqliteStateStore(tmp_path / "sense" / ".sluice" / "state.db")
    try:
        wait_for(lambda: [r.status for r in store.find_runs("sense", schedule="landing")] == ["succeeded"], 60, "the run")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    try:
        cursor = store.sensor_cursor("sense", "landing")
        assert cursor is not None and cursor.last_key is not None and list(cursor.value["seen"]) == ["in/a.csv"]
        assert "scheduling landing of project sense" in log.read_text()
    finally:
        store.close()
