"""Sensors hosted by the scheduler of ``sluice serve``: a file landing starts a run (trigger sensor), once."""

from __future__ import annotations

from pathlib import Path

from live_server import LiveServer

from helpers import wait_for, write_yaml
from sluice.project.load import load_project

PROJECT = """
name: hosted
objects:
  - {id: 1001, name: raw_a}
sensors:
  landing: {type: files, path: 'in/*.csv', min_interval: 0s}
"""


def test_a_landing_file_starts_one_sensor_run(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "hosted", PROJECT)
    (tmp_path / "hosted" / "in").mkdir()
    project = load_project(path)
    with LiveServer(project) as server, server.client() as client:
        assert server.services.scheduler is not None  # started for the sensor alone
        state = server.services.backends.state
        (tmp_path / "hosted" / "in" / "a.csv").write_text("x\n")

        def sensor_runs() -> list[str]:
            return [r.status for r in state.find_runs("hosted", schedule="landing")]

        wait_for(lambda: sensor_runs() == ["succeeded"], 60, "the sensor's run to succeed")

        def cursor_saved() -> bool:
            cursor = state.sensor_cursor("hosted", "landing")
            return cursor is not None and cursor.last_key is not None

        wait_for(cursor_saved, 30, "the cursor to be saved once the tick is recorded")
        cursor = state.sensor_cursor("hosted", "landing")
        assert cursor is not None and list(cursor.value["seen"]) == ["in/a.csv"]
        [tick] = state.ticks("hosted", "landing")
        assert tick.logical_date == cursor.last_key and tick.status == "fired"
        runs = client.get("/runs").json()["runs"]
        assert len(runs) == 1
    assert sensor_runs() == ["succeeded"]  # fired once
