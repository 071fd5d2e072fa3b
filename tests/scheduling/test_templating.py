"""{{ ds }} and friends in sql: and source options: each scheduled run processes its own slice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests.helpers import wait_for, write_yaml
from tests.scheduling.scheduling_helpers import utc

from sluice.errors import ConfigError
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, open_backends, run_project
from sluice.scheduling.scheduler import FakeClock, Scheduler
from sluice.scheduling.starter import CoordinatorStarter
from sluice.scheduling.templating import render_project, run_context

PROJECT = """
name: daily
objects:
  - id: 1001
    name: day_file
    source: {type: csv, path: "data/{{ ds }}.csv"}
  - id: 2001
    name: day_rows
    parents: [1001]
    sql: |
      SELECT id, v, '{{ ds }}' AS ds, '{{ ds_nodash }}' AS ds_nodash,
             '{{ data_interval_start }}' AS interval_start, '{{ data_interval_end }}' AS interval_end
      FROM day_file
schedules:
  nightly: {cron: "0 2 * * *", targets: [2001]}
"""


def daily_project(tmp_path: Path, text: str = PROJECT) -> Project:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "2026-01-01.csv").write_text("id,v\n1,a\n2,b\n", encoding="utf-8")
    (tmp_path / "data" / "2026-01-02.csv").write_text("id,v\n3,c\n", encoding="utf-8")
    return load_project(write_yaml(tmp_path, text))


def rows(tmp_path: Path) -> list[tuple[object, ...]]:
    path = tmp_path / ".sluice" / "lake" / "cleaned" / "day_rows.parquet"
    return duckdb.sql(f"SELECT * FROM '{path}' ORDER BY id").fetchall()


def scheduled(tmp_path: Path, project: Project, start: datetime, ticks: list[datetime]) -> list[dict[str, Any]]:
    """Step a scheduler of ``project`` at ``start`` (the baseline), then at each tick; for each run: its options, its
    objects' statuses and the rows of day_rows' plain output once it finished."""
    clock = FakeClock(start)
    seen = []
    with open_backends(project) as backends:
        starter = CoordinatorStarter(project, backends)
        scheduler = Scheduler(project, backends.state, starter, clock=clock)
        try:
            scheduler.step()
            for at in ticks:
                clock.set(at)
                (tick,) = scheduler.step().fired
                run_id = tick.run_id
                assert run_id is not None
                wait_for(lambda: backends.state.get_run(run_id).status != "running", 30, "the scheduled run")  # noqa: B023
                record = backends.state.get_run(run_id)
                states = {oid: s.status for oid, s in backends.state.object_states(run_id).items()}
                seen.append({"status": record.status, "options": record.options, "states": states, "rows": rows(tmp_path)})
        finally:
            starter.close()
    return seen


def test_each_scheduled_run_renders_its_logical_date_in_sql_and_source_options(tmp_path: Path) -> None:
    first, second = scheduled(tmp_path, daily_project(tmp_path), utc(2026, 1, 1, 1), [utc(2026, 1, 1, 2), utc(2026, 1, 2, 2)])
    assert first["status"] == second["status"] == "succeeded"
    assert first["rows"] == [
        (1, "a", "2026-01-01", "20260101", "2025-12-31 02:00:00+00:00", "2026-01-01 02:00:00+00:00"),
        (2, "b", "2026-01-01", "20260101", "2025-12-31 02:00:00+00:00", "2026-01-01 02:00:00+00:00"),
    ]
    # the second date is not "fresh" because of the first: its own file, its own rows
    assert second["rows"] == [(3, "c", "2026-01-02", "20260102", "2026-01-01 02:00:00+00:00", "2026-01-02 02:00:00+00:00")]
    assert second["states"] == {1001: "loaded", 2001: "loaded"}


def test_a_manual_run_without_a_logical_date_renders_today(tmp_path: Path) -> None:
    project = daily_project(tmp_path)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    (tmp_path / "data" / f"{today}.csv").write_text("id,v\n9,z\n", encoding="utf-8")
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", summary.to_json()
    (row,) = rows(tmp_path)
    assert row[:3] == (9, "z", today) and row[4] == row[5]  # the data interval of a manual run is empty


def test_an_unknown_variable_is_one_line_naming_the_object(tmp_path: Path) -> None:
    project = daily_project(tmp_path, PROJECT.replace("'{{ ds_nodash }}'", "'{{ next_ds }}'"))
    with pytest.raises(ConfigError) as caught:
        render_project(project, {"logical_date": "2026-01-01T02:00:00+00:00", "schedule": "nightly"})
    message = str(caught.value)
    assert "\n" not in message
    assert "object 2001 (day_rows): sql: 'next_ds' is undefined; the variables are logical_date, ds" in message
    assert message.startswith(f"{tmp_path / 'sluice.yaml'}:")


def test_the_data_interval_of_a_schedule_follows_its_cron_in_its_time_zone(tmp_path: Path) -> None:
    project = daily_project(tmp_path, PROJECT.replace('{cron: "0 2 * * *"', '{cron: "0 2 * * *", timezone: Europe/Paris'))
    # 02:00 does not exist: 03:00 CEST
    context = run_context(project, {"logical_date": "2026-03-29T01:00:00+00:00", "schedule": "nightly"})
    assert context["ds"] == "2026-03-29" and context["data_interval_start"] == utc(2026, 3, 28, 1)  # 02:00 CET
    other = run_context(project, {"logical_date": "2026-03-29T00:00:00+00:00", "schedule": "a-backfill"})
    assert other["data_interval_start"] == utc(2026, 3, 29)


def test_validate_renders_templates_before_checking_sql_and_leaves_templated_paths_alone(tmp_path: Path) -> None:
    from sluice.project.validate import ahead_of_run

    assert ahead_of_run(daily_project(tmp_path)) == []  # the path data/{{ ds }}.csv is not "missing"
    unquoted = PROJECT.replace("'{{ ds_nodash }}' AS ds_nodash", "{{ ds_nodash }} AS ds_nodash")
    assert ahead_of_run(daily_project(tmp_path, unquoted)) == []  # rendered SQL parses
    (problem,) = ahead_of_run(daily_project(tmp_path, PROJECT.replace("'{{ ds_nodash }}'", "'{{ next_ds }}'")))
    assert problem.line == 10 and "object 2001 (day_rows): sql: 'next_ds' is undefined" in problem.message


PARIS = PROJECT.replace("'{{ ds_nodash }}' AS ds_nodash", "'{{ ts }}' AS ts").replace(
    'nightly: {cron: "0 2 * * *", targets: [2001]}', 'nightly: {cron: "30 0 * * *", timezone: Europe/Paris, targets: [2001]}'
)


def test_ds_is_the_date_in_the_schedules_time_zone_across_a_daylight_saving_change(tmp_path: Path) -> None:
    """00:30 in Paris is the evening before in UTC: {{ ds }} is the Paris day (the file of that day is read), the
    interval runs from the previous tick to this one in Paris time (23 hours over the spring change), ts keeps UTC."""
    project = daily_project(tmp_path, PARIS)
    for day in ("2026-03-29", "2026-03-30"):
        (tmp_path / "data" / f"{day}.csv").write_text(f"id,v\n{day[-1]},x\n", encoding="utf-8")
    ticks = [utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 22, 30)]  # 00:30 CET, then 00:30 CEST
    seen = scheduled(tmp_path, project, utc(2026, 3, 28, 22), ticks)
    assert [(run["status"], run["options"]["timezone"]) for run in seen] == [("succeeded", "Europe/Paris")] * 2
    assert [run["rows"] for run in seen] == [
        [(9, "x", "2026-03-29", "2026-03-28T23:30:00+00:00", "2026-03-28 00:30:00+01:00", "2026-03-29 00:30:00+01:00")],
        [(0, "x", "2026-03-30", "2026-03-29T22:30:00+00:00", "2026-03-29 00:30:00+01:00", "2026-03-30 00:30:00+02:00")],
    ]


def test_the_run_options_time_zone_and_interval_win_over_the_schedules(tmp_path: Path) -> None:
    """A backfill's or a sensor's run names no project schedule: its options carry the zone (and interval)."""
    project = daily_project(tmp_path, PARIS)
    late = "2026-10-24T22:30:00+00:00"  # 00:30 CEST on the day of the autumn change
    sensor = run_context(project, {"logical_date": late, "schedule": "landing", "timezone": "Europe/Paris"})
    assert (sensor["ds"], sensor["ts"], str(sensor["logical_date"])) == ("2026-10-25", late, "2026-10-25 00:30:00+02:00")
    assert sensor["data_interval_start"] == sensor["data_interval_end"] == utc(2026, 10, 24, 22, 30)  # empty interval
    backfill = run_context(
        project,
        {
            "logical_date": late,
            "schedule": "backfill:bf-1",
            "timezone": "Europe/Paris",
            "data_interval_start": "2026-10-23T22:30:00+00:00",
        },
    )
    assert str(backfill["data_interval_start"]) == "2026-10-24 00:30:00+02:00" and backfill["ds_nodash"] == "20261025"
    namesake = run_context(project, {"logical_date": late, "schedule": "nightly", "trigger": "sensor"})
    assert namesake["data_interval_start"] == namesake["data_interval_end"]  # a sensor named like a schedule
    plain = run_context(project, {"logical_date": late})  # no zone anywhere: UTC, as before
    assert (plain["ds"], str(plain["logical_date"])) == ("2026-10-24", "2026-10-24 22:30:00+00:00")
