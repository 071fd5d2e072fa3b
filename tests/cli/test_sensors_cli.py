"""``sluice sensors PATH``: the sensors with their cursors, and ``--poll`` running what they ask for."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import sluice_cli, write_yaml

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
