"""``sluice sensors PATH``: the sensors with their cursors, and ``--poll`` running what they ask for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import write_yaml

SLUICE = [sys.executable, "-m", "sluice"]
PROJECT = """
name: sense
objects:
  - {id: 1001, name: raw_a}
  - {id: 2001, name: clean_a, parents: [1001]}
sensors:
  landing: {type: files, path: 'in/*.csv', targets: [raw_a], min_interval: 1h}
  later: {type: files, path: 'other/*', enabled: false}
"""


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLUICE, *args], capture_output=True, text=True, timeout=120, check=False)


def test_poll_runs_what_a_sensor_asks_for_once_per_min_interval(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "sense", PROJECT)
    (tmp_path / "sense" / "in").mkdir()
    (tmp_path / "sense" / "in" / "a.csv").write_text("x\n")
    listed = json.loads(sluice("sensors", str(path), "--json").stdout)
    assert [(s["name"], s["type"], s["enabled"], s["fired_at"]) for s in listed] == [
        ("landing", "files", True, None),
        ("later", "files", False, None),
    ]
    polled = sluice("sensors", str(path), "--poll", "--json")
    assert polled.returncode == 0, polled.stderr
    answer = json.loads(polled.stdout)
    [started] = answer["started"]
    assert started.startswith("sensor landing fired: run ") and started.endswith(" succeeded")
    landing = answer["sensors"][0]
    assert landing["cursor"]["seen"].keys() == {"in/a.csv"} and landing["last_key"].startswith("landing@")
    (tmp_path / "sense" / "in" / "b.csv").write_text("y\n")
    assert json.loads(sluice("sensors", str(path), "--poll", "--json").stdout)["started"] == []  # within 1h
    runs = json.loads(sluice("runs", str(path), "--schedule", "landing", "--json").stdout)
    assert [(r["trigger"], r["schedule"]) for r in runs] == [("sensor", "landing")]
    text = sluice("sensors", str(path)).stdout
    assert "landing" in text and "every >= 3600s" in text and "later" in text and "(disabled)" in text
