"""``examples/dataflow360``'s schedules (seed 004's DAGs): 2:00, 3:00 and 4:00 in Paris, each waiting for the one
before it that day, and the master pipeline once all three succeeded; driven with a fake clock, runs recorded."""

from __future__ import annotations

from pathlib import Path

from tests.scheduling.scheduling_helpers import Harness, utc

from sluice.project.load import load_project
from sluice.scheduling.scheduler import FakeClock
from sluice.state.sqlite import SqliteStateStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dataflow360"


def test_the_seed_004_dags_fire_in_order_on_paris_time(tmp_path: Path) -> None:
    project = load_project(EXAMPLE)
    specs = {s.name: s for s in project.schedules}
    assert {name: (s.cron, s.timezone, s.targets) for name, s in specs.items()} == {
        "batch_ingestion": ("0 2 * * *", "Europe/Paris", (1001, 1002, 1003)),
        "pyspark_transformation": ("0 3 * * *", "Europe/Paris", (2001, 2002, 2003)),
        "dbt": ("0 4 * * *", "Europe/Paris", (3001, 3002, 3003)),
        "master_pipeline": ("30 4 * * *", "Europe/Paris", None),
    }
    state = SqliteStateStore(tmp_path / "state.db")
    clock = FakeClock(utc(2026, 7, 1, 20))  # 22:00 in Paris (CEST, UTC+2)
    h = Harness(project, state, clock)
    h.scheduler.step()
    clock.set(utc(2026, 7, 2, 0))  # 02:00 Paris
    assert [t.schedule for t in h.scheduler.step().fired] == ["batch_ingestion"]
    clock.set(utc(2026, 7, 2, 1))  # 03:00: the ingestion run is still going
    assert h.scheduler.step().fired == []
    h.starter.finish("succeeded")
    assert [t.schedule for t in h.scheduler.step().fired] == ["pyspark_transformation"]
    h.starter.finish("succeeded")
    clock.set(utc(2026, 7, 2, 2))  # 04:00
    assert [t.schedule for t in h.scheduler.step().fired] == ["dbt"]
    clock.set(utc(2026, 7, 2, 2, 30))  # 04:30: dbt still going; the master pipeline waits for it
    report = h.scheduler.step()
    assert report.fired == [] and report.waiting == 1
    h.starter.finish("succeeded")
    clock.advance(60)
    (master,) = h.scheduler.step().fired
    assert (master.schedule, master.logical_date) == ("master_pipeline", "2026-07-02T02:30:00+00:00")
    assert h.missed() == []
    state.close()
