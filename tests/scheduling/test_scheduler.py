"""The scheduler with a fake clock: ticks fired once, catch-up policies, max_active_runs, wait_for, restarts, leases."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tests.helpers import logged
from tests.scheduling.scheduling_helpers import Harness, project_with, utc

from sluice.scheduling.listing import schedules_view
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.scheduler import FakeClock
from sluice.state.sqlite import SqliteStateStore

HOURLY = "  hourly: {cron: '0 * * * *', targets: [2001], catch_up: %s}\n"


@pytest.fixture
def state(tmp_path: Path) -> SqliteStateStore:
    store = SqliteStateStore(tmp_path / "state.db")
    yield store
    store.close()


def test_a_tick_fires_once_with_its_logical_date_targets_and_trigger(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, "  nightly: {cron: '0 2 * * *', timezone: Europe/Paris, tags: [crm]}\n")
    clock = FakeClock(utc(2026, 1, 1, 0, 59))
    h = Harness(project, state, clock)
    assert h.scheduler.step().fired == []  # first sight: the previous tick is the baseline, not run
    clock.set(utc(2026, 1, 1, 1, 0))  # 02:00 in Paris
    report = h.scheduler.step()
    assert [(t.schedule, t.logical_date) for t in report.fired] == [("nightly", "2026-01-01T01:00:00+00:00")]
    assert h.scheduler.step().fired == []
    clock.advance(3600)
    assert h.scheduler.step().fired == []
    request = h.starter.requests[0]
    assert (request.trigger, request.targets, request.key) == ("schedule", (1002,), "2026-01-01T01:00:00+00:00")
    options = state.get_run(h.starter.run_ids[0]).options
    assert (options["logical_date"], options["trigger"], options["schedule"]) == (
        "2026-01-01T01:00:00+00:00",
        "schedule",
        "nightly",
    )
    last = state.last_ticks("shop")["nightly"]
    assert (last.status, last.run_id) == ("fired", h.starter.run_ids[0])


def test_catch_up_none_misses_the_ticks_that_passed_while_down(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "none")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    Harness(project, state, clock).scheduler.step()  # baseline 00:00; then nobody runs until 05:00:10
    clock.set(utc(2026, 1, 1, 5, 0, 10))
    h = Harness(project, state, clock, holder="b", lease_s=0.001)
    report = h.scheduler.step()
    assert [t.logical_date for t in report.fired] == ["2026-01-01T05:00:00+00:00"]  # on time (10 s late)
    assert [(s, d[11:16]) for s, d, _ in h.missed()] == [
        ("hourly", "01:00"),
        ("hourly", "02:00"),
        ("hourly", "03:00"),
        ("hourly", "04:00"),
    ]
    assert all(reason.startswith("catch_up: none") for _, _, reason in h.missed())
    assert [t.logical_date[11:16] for t in report.missed] == ["01:00", "02:00", "03:00", "04:00"]


def test_catch_up_latest_runs_only_the_newest(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "latest")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    Harness(project, state, clock).scheduler.step()
    clock.set(utc(2026, 1, 1, 5, 30))  # 05:00 is 30 minutes late: still the one that runs
    h = Harness(project, state, clock, holder="b", lease_s=0.001)
    report = h.scheduler.step()
    assert h.starter.fired() == [("hourly", "2026-01-01T05:00:00+00:00")]
    assert [d[11:16] for _, d, _ in h.missed()] == ["01:00", "02:00", "03:00", "04:00"]
    assert len(report.missed) == 4


def test_catch_up_all_runs_each_in_order_as_slots_free(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "all")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    Harness(project, state, clock).scheduler.step()
    clock.set(utc(2026, 1, 1, 3, 30))
    h = Harness(project, state, clock, holder="b", lease_s=0.001)
    report = h.scheduler.step()
    assert [t.logical_date[11:16] for t in report.fired] == ["01:00"] and report.waiting == 2  # max_active_runs 1
    assert h.scheduler.step().fired == []  # still running
    h.starter.finish()
    assert [t.logical_date[11:16] for t in h.scheduler.step().fired] == ["02:00"]
    h.starter.finish()
    assert [t.logical_date[11:16] for t in h.scheduler.step().fired] == ["03:00"]
    assert h.missed() == []


def test_a_tick_refused_by_max_active_runs_is_missed(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "latest")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    h = Harness(project, state, clock)
    h.scheduler.step()
    clock.set(utc(2026, 1, 1, 1, 0))
    assert len(h.scheduler.step().fired) == 1
    clock.set(utc(2026, 1, 1, 2, 0))  # the 01:00 run is still going
    report = h.scheduler.step()
    assert report.fired == []
    assert h.missed() == [("hourly", "2026-01-01T02:00:00+00:00", "max_active_runs: 1 run(s) of the schedule still running")]
    h.starter.finish()
    clock.set(utc(2026, 1, 1, 3, 0))
    assert [t.logical_date[11:16] for t in h.scheduler.step().fired] == ["03:00"]


def test_a_restart_across_a_tick_neither_misses_nor_repeats_it(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "none")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    first = Harness(project, state, clock, holder="first")
    first.scheduler.step()
    clock.set(utc(2026, 1, 1, 1, 0))
    assert len(first.scheduler.step().fired) == 1
    first.starter.finish()
    clock.set(utc(2026, 1, 1, 1, 59, 50))
    first.scheduler.step()  # renews its lease until 02:00:20; then the process dies without releasing it
    clock.set(utc(2026, 1, 1, 2, 0, 10))
    second = Harness(project, state, clock, holder="second")
    assert not second.scheduler.step().leader  # stands by while the dead scheduler's lease runs
    clock.set(utc(2026, 1, 1, 2, 0, 25))
    report = second.scheduler.step()
    assert report.leader and [t.logical_date for t in report.fired] == ["2026-01-01T02:00:00+00:00"]
    assert second.missed() == [] and first.starter.fired() == [("hourly", "2026-01-01T01:00:00+00:00")]
    second.starter.finish()
    second.scheduler.release()  # a clean stop: the next scheduler takes over at once
    clock.set(utc(2026, 1, 1, 3, 0, 1))
    third = Harness(project, state, clock, holder="third")
    assert [t.logical_date for t in third.scheduler.step().fired] == ["2026-01-01T03:00:00+00:00"]
    fired = [t.logical_date[11:16] for t in state.ticks("shop", "hourly") if t.status == "fired"]
    assert fired == ["03:00", "02:00", "01:00"]


def test_wait_for_starts_once_the_other_schedules_run_of_that_date_succeeded(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(
        tmp_path,
        "  ingest: {cron: '0 2 * * *', targets: [1001]}\n  master: {cron: '30 2 * * *', targets: [2001], wait_for: [ingest]}\n",
    )
    clock = FakeClock(utc(2026, 1, 1, 1, 0))
    h = Harness(project, state, clock)
    h.scheduler.step()
    clock.set(utc(2026, 1, 1, 2, 0))
    h.scheduler.step()
    assert h.starter.fired() == [("ingest", "2026-01-01T02:00:00+00:00")]
    clock.set(utc(2026, 1, 1, 2, 30))
    report = h.scheduler.step()
    assert report.fired == [] and report.waiting == 1  # ingest's 02:00 run is still running
    clock.advance(60)
    h.starter.finish("succeeded")
    report = h.scheduler.step()
    assert [(t.schedule, t.logical_date) for t in report.fired] == [("master", "2026-01-01T02:30:00+00:00")]
    # next day ingest fails: master waits, and the day after its newer tick supersedes the waiting one
    h.starter.finish()
    clock.set(utc(2026, 1, 2, 2, 0))
    h.scheduler.step()
    h.starter.finish("failed")
    clock.set(utc(2026, 1, 2, 2, 30))
    assert h.scheduler.step().waiting == 1
    clock.set(utc(2026, 1, 3, 2, 0))
    h.scheduler.step()
    clock.set(utc(2026, 1, 3, 2, 30))
    report = h.scheduler.step()
    assert h.missed() == [
        ("master", "2026-01-02T02:30:00+00:00", "superseded by a newer tick while waiting for ingest"),
    ]
    h.starter.finish("succeeded")
    assert [t.logical_date for t in h.scheduler.step().fired] == ["2026-01-03T02:30:00+00:00"]


def test_requests_from_other_sources_start_once(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, "  paused: {cron: '0 2 * * *', enabled: false}\n")

    class Sensor:
        def poll(self, now: object) -> list[RunRequest]:
            return [RunRequest("new-files", "sensor", utc(2026, 1, 1, 3), (1002,), "new-files@s3://bucket/a.csv")]

    clock = FakeClock(utc(2026, 1, 1, 3))
    h = Harness(project, state, clock)
    h.scheduler.sources.append(Sensor())
    assert [(t.schedule, t.logical_date) for t in h.scheduler.step().fired] == [("new-files", "new-files@s3://bucket/a.csv")]
    clock.advance(timedelta(days=2).total_seconds())
    assert h.scheduler.step().fired == []  # the same key again; and the disabled schedule never fires
    assert [(r.name, r.trigger, r.targets) for r in h.starter.requests] == [("new-files", "sensor", (1002,))]


def test_after_a_long_downtime_latest_runs_the_newest_tick_and_one_missed_record_stands_for_the_others(
    tmp_path: Path, state: SqliteStateStore
) -> None:
    project = project_with(tmp_path, "  minutely: {cron: '* * * * *'}\n")
    clock = FakeClock(utc(2025, 1, 1, 0, 0, 30))
    Harness(project, state, clock).scheduler.step()
    clock.set(utc(2026, 1, 1, 0, 0, 5))  # a year later: half a million ticks
    h = Harness(project, state, clock, holder="b", lease_s=0.001)
    report = h.scheduler.step()
    assert [t.logical_date for t in report.fired] == ["2026-01-01T00:00:00+00:00"]
    span = "the ticks from 2025-01-01T00:01:00+00:00 to 2025-12-31T23:59:00+00:00 passed while no scheduler ran"
    assert h.missed() == [("minutely", "2025-12-31T23:59:00+00:00", f"catch_up: latest ({span}; this record stands for them)")]
    assert [t.logical_date for t in report.missed] == ["2025-12-31T23:59:00+00:00"]  # one alert, not half a million
    clock.advance(60)
    assert [t.logical_date for t in h.scheduler.step().fired] == []  # still running: max_active_runs 1
    assert h.missed()[1:] == [
        ("minutely", "2026-01-01T00:01:00+00:00", "max_active_runs: 1 run(s) of the schedule still running")
    ]


def test_a_daily_schedule_in_paris_fires_once_a_day_across_both_changes(tmp_path: Path) -> None:
    project = project_with(tmp_path, "  daily: {cron: '30 2 * * *', timezone: Europe/Paris, max_active_runs: 100}\n")
    fired: list[str] = []
    for start, days in ((utc(2026, 3, 27, 12), 4), (utc(2026, 10, 23, 12), 4)):
        clock = FakeClock(start)
        state = SqliteStateStore(tmp_path / f"state-{start.month}.db")
        h = Harness(project, state, clock)
        h.scheduler.step()
        for _ in range(days * 24 * 4):  # every quarter of an hour
            clock.advance(900)
            fired += [t.logical_date for t in h.scheduler.step().fired]
        assert h.missed() == []
        state.close()
    assert fired == [
        "2026-03-28T01:30:00+00:00",  # 02:30 CET
        "2026-03-29T01:30:00+00:00",  # 02:30 does not exist: 03:30 CEST
        "2026-03-30T00:30:00+00:00",  # 02:30 CEST
        "2026-03-31T00:30:00+00:00",
        "2026-10-24T00:30:00+00:00",  # 02:30 CEST
        "2026-10-25T00:30:00+00:00",  # 02:30 happens twice: the first (CEST) only
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
        "2026-10-27T01:30:00+00:00",
    ]


def test_a_tick_fired_by_a_scheduler_that_died_before_its_run_was_recorded_starts_once(
    tmp_path: Path, state: SqliteStateStore
) -> None:
    project = project_with(tmp_path, HOURLY % "latest")
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    first = Harness(project, state, clock, holder="first")
    first.scheduler.step()
    clock.set(utc(2026, 1, 1, 1, 0))

    class Dies:
        def start(self, requests: object, run_ids: object = None) -> list[str | None]:
            raise SystemExit("killed between recording the tick and recording its run")

    first.scheduler.starter = Dies()
    with pytest.raises(SystemExit):
        first.scheduler.step()
    (tick,) = [t for t in state.ticks("shop", "hourly") if t.status == "fired"]
    assert tick.run_id is not None and tick.run_status is None  # recorded with its run id, no run
    clock.set(utc(2026, 1, 1, 1, 1))  # the dead scheduler's lease has expired
    second = Harness(project, state, clock, holder="second")
    report = second.scheduler.step()
    assert [(t.logical_date, t.run_id) for t in report.fired] == [("2026-01-01T01:00:00+00:00", tick.run_id)]
    assert state.get_run(tick.run_id).options["logical_date"] == "2026-01-01T01:00:00+00:00"
    third = Harness(project, state, clock, holder="third", lease_s=0.001)  # the run is recorded now: nothing again
    clock.advance(60)
    assert third.scheduler.step().fired == [] and third.starter.requests == []


def test_a_fired_ticks_run_id_carries_the_time_it_fired_never_before_its_tick(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, HOURLY % "latest")
    clock = FakeClock(utc(2026, 1, 1, 0, 59, 59))
    h = Harness(project, state, clock)
    h.scheduler.step()
    clock.set(utc(2026, 1, 1, 1, 0) + timedelta(microseconds=700))  # the scheduler wakes at its tick
    [fired] = h.scheduler.step().fired
    expected = time.strftime("%Y%m%d-%H%M%S", time.localtime(utc(2026, 1, 1, 1, 0).timestamp()))
    assert fired.logical_date == "2026-01-01T01:00:00+00:00"
    assert fired.run_id is not None and fired.run_id.startswith(expected + "-"), fired.run_id
    assert h.starter.run_ids == [fired.run_id]


def test_wait_for_on_a_schedule_with_the_same_cron_waits_for_its_run_of_this_tick_not_the_previous_one(
    tmp_path: Path, state: SqliteStateStore
) -> None:
    project = project_with(
        tmp_path,
        "  ingest: {cron: '0 * * * *', targets: [1001]}\n  transform: {cron: '0 * * * *', targets: [2001], wait_for: [ingest]}\n",
    )
    clock = FakeClock(utc(2026, 1, 1, 0, 30))
    h = Harness(project, state, clock)
    h.scheduler.step()
    for hour in (1, 2, 3):
        clock.set(utc(2026, 1, 1, hour, 0))
        report = h.scheduler.step()  # both fall due at once: ingest's run of this hour has not even been recorded
        assert [(t.schedule, t.logical_date) for t in report.fired] == [("ingest", f"2026-01-01T0{hour}:00:00+00:00")]
        clock.advance(5)
        assert h.scheduler.step().fired == []  # ingest's run of this hour is still running
        h.starter.finish("succeeded")
        clock.advance(5)
        assert [(t.schedule, t.logical_date) for t in h.scheduler.step().fired] == [
            ("transform", f"2026-01-01T0{hour}:00:00+00:00")
        ]
        h.starter.finish("succeeded")


def test_a_schedule_whose_next_tick_cannot_be_computed_is_set_apart_and_the_others_fire(
    tmp_path: Path, state: SqliteStateStore
) -> None:
    project = project_with(tmp_path, "  a: {cron: '0 * * * *'}\n  b: {cron: '30 * * * *'}\n")
    broken = replace(project.schedules[0], name="never", cron="0 0 30 2 *")  # what validation refuses, got past it
    project = replace(project, schedules=(broken, *project.schedules))
    clock = FakeClock(utc(2026, 1, 1, 0, 59))
    h = Harness(project, state, clock)
    with logged("sluice.scheduler", logging.ERROR) as records:
        assert h.scheduler.step().fired == []
        clock.set(utc(2026, 1, 1, 1, 0))
        report = h.scheduler.step()
        clock.set(utc(2026, 1, 1, 1, 30))
        h.scheduler.step()
    assert [t.schedule for t in report.fired] == ["a"]
    assert h.starter.fired() == [("a", "2026-01-01T01:00:00+00:00"), ("b", "2026-01-01T01:30:00+00:00")]
    assert "never" in report.problems and "never fires" in report.problems["never"]
    assert len([r for r in records if "never" in r.getMessage()]) == 1  # said once, not at every step
    view = schedules_view(project, state, utc(2026, 1, 1, 1, 45), problems=h.scheduler.problems)
    entries = {s["name"]: s for s in view["schedules"]}
    assert entries["never"]["next"] == [] and "never fires" in entries["never"]["error"]
    assert entries["a"]["error"] is None and entries["a"]["next"][0] == "2026-01-01T02:00:00+00:00"


def test_a_schedule_whose_run_cannot_launch_is_reported_and_the_others_fire(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, "  a: {cron: '0 * * * *'}\n  bad: {cron: '0 * * * *', targets: [1002]}\n")
    clock = FakeClock(utc(2026, 1, 1, 0, 59))
    h = Harness(project, state, clock)
    start = h.starter.start

    def refusing(requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]:
        if any(r.name == "bad" for r in requests):
            raise RuntimeError("the state store refused the run")
        return start(requests, run_ids)

    h.starter.start = refusing  # type: ignore[method-assign]
    h.scheduler.step()
    for hour in (1, 2):
        h.starter.finish()  # max_active_runs: 1
        clock.set(utc(2026, 1, 1, hour, 0))
        report = h.scheduler.step()
        assert [(t.schedule, t.run_id is not None) for t in report.fired] == [("a", True), ("bad", False)]
    assert h.starter.fired() == [("a", "2026-01-01T01:00:00+00:00"), ("a", "2026-01-01T02:00:00+00:00")]
    assert report.problems == {"bad": "the run of tick 2026-01-01T02:00:00+00:00 did not start: the state store refused the run"}
    h.starter.start = start  # type: ignore[method-assign]
    h.starter.finish()
    clock.set(utc(2026, 1, 1, 3, 0))
    assert h.scheduler.step().problems == {}


def test_a_schedule_set_apart_is_taken_back_once_its_file_is_fixed_and_no_tick_fires_twice_or_passes_unrecorded(
    tmp_path: Path, state: SqliteStateStore
) -> None:
    schedules = "  a: {cron: '0 * * * *', catch_up: latest}\n  b: {cron: '30 * * * *'}\n"
    good = project_with(tmp_path, schedules)
    clock = FakeClock(utc(2026, 1, 1, 0, 59))
    first = Harness(good, state, clock, holder="first")
    first.scheduler.step()
    clock.set(utc(2026, 1, 1, 1, 0))
    assert [t.schedule for t in first.scheduler.step().fired] == ["a"]
    first.starter.finish()
    first.scheduler.release()
    # The next scheduler's copy of a cannot be computed (what validation refuses, got past it): it is set apart.
    broken = replace(good, schedules=(replace(good.schedules[0], cron="0 0 30 2 *"), good.schedules[1]))
    clock.set(utc(2026, 1, 1, 1, 10))
    second = Harness(broken, state, clock, holder="second")
    standby = Harness(good, state, clock, holder="standby")  # a correct copy, standing by: it never fires a tick
    with logged("sluice.scheduler", logging.WARNING) as records:
        assert "a" in second.scheduler.step().problems and not standby.scheduler.step().leader
        for hour in (2, 3):  # a's 02:00 and 03:00 fall due while it is set apart; b keeps firing
            clock.set(utc(2026, 1, 1, hour - 1, 30))
            assert [t.schedule for t in second.scheduler.step().fired] == ["b"]
            second.starter.finish()
            clock.set(utc(2026, 1, 1, hour, 0))
            assert second.scheduler.step().fired == [] and not standby.scheduler.step().leader
        clock.set(utc(2026, 1, 1, 3, 5))
        (tmp_path / "sluice.yaml").write_text("name: shop\nobjects: [\n", encoding="utf-8")  # being edited: no YAML
        report = second.scheduler.step()
        assert report.fired == [] and "a" in report.problems
        clock.advance(10)
        assert second.scheduler.step().fired == []  # unchanged since: not read again, not said again
        (tmp_path / "sluice.yaml").unlink()
        project_with(tmp_path, schedules)  # fixed
        clock.advance(10)
        report = second.scheduler.step()
    assert [(t.schedule, t.logical_date) for t in report.fired] == [("a", "2026-01-01T03:00:00+00:00")]
    assert second.missed() == [
        ("a", "2026-01-01T02:00:00+00:00", "catch_up: latest (a newer tick runs instead)"),
    ]
    assert report.problems == {} and second.scheduler.problems == {}
    messages = [r.getMessage() for r in records]
    assert len([m for m in messages if "does not load" in m]) == 1
    assert [m for m in messages if "scheduled again" in m] == [
        "schedule a is scheduled again (the project's file was fixed): from 2026-01-01T02:00:00+00:00 on; the ticks that "
        "fell due while it was set apart follow catch_up: latest"
    ]
    second.starter.finish()
    clock.set(utc(2026, 1, 1, 4, 0))
    assert sorted((t.schedule, t.logical_date[11:16]) for t in second.scheduler.step().fired) == [("a", "04:00"), ("b", "03:30")]
    assert not standby.scheduler.step().leader
    second.scheduler.release()
    clock.advance(5)
    assert standby.scheduler.step().fired == []  # takes over: nothing to fire again
    recorded = [(t.logical_date[11:16], t.status) for t in state.ticks("shop", "a")]
    assert recorded == [("04:00", "fired"), ("03:00", "fired"), ("02:00", "missed"), ("01:00", "fired"), ("00:00", "baseline")]
    fired = first.starter.fired() + second.starter.fired() + standby.starter.fired()
    assert sorted(d[11:16] for s, d in fired if s == "a") == ["01:00", "03:00", "04:00"]


def test_a_schedule_set_apart_and_then_removed_from_its_file_is_dropped(tmp_path: Path, state: SqliteStateStore) -> None:
    project = project_with(tmp_path, "  a: {cron: '0 * * * *'}\n")
    broken = replace(project.schedules[0], name="never", cron="0 0 30 2 *")
    clock = FakeClock(utc(2026, 1, 1, 0, 59))
    h = Harness(replace(project, schedules=(broken, *project.schedules)), state, clock)
    assert "never" in h.scheduler.step().problems
    clock.advance(10)
    assert "never" in h.scheduler.step().problems  # the file did not change: not read again
    (tmp_path / "sluice.yaml").unlink()
    project_with(tmp_path, "  a: {cron: '0 * * * *'}\n  b: {cron: '0 * * * *', enabled: false}\n")
    clock.advance(10)
    assert h.scheduler.step().problems == {}
    assert [s.name for s in h.scheduler.schedules] == ["a"]  # the other changes wait for a restart
    clock.set(utc(2026, 1, 1, 1, 0))
    assert [t.schedule for t in h.scheduler.step().fired] == ["a"]
