"""Backfills over a real SQLite state store with a fake run launcher: order, the parallel bound, a failed date, an
interruption and its resume, and the same command resuming the unfinished backfill."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sluice.errors import ConfigError
from sluice.scheduling.backfills import Backfills, BackfillSpec, logical_dates
from sluice.scheduling.requests import RunRequest
from sluice.state.base import BackfillDate, RunRecord
from sluice.state.sqlite import SqliteStateStore


@pytest.fixture
def state(tmp_path: Path) -> SqliteStateStore:
    store = SqliteStateStore(tmp_path / "state.db")
    yield store
    store.close()


class FakeRuns:
    """Records the requests it is given; ``fail`` dates fail, ``hook`` runs inside each run."""

    def __init__(self, fail: frozenset[str] = frozenset(), hook: Callable[[RunRequest], None] | None = None) -> None:
        self.requests: list[RunRequest] = []
        self.resumed: list[str | None] = []
        self.fail = fail
        self.hook = hook
        self.lock = threading.Lock()

    def __call__(self, request: RunRequest, started: Callable[[str], None], resume: str | None = None) -> str:
        with self.lock:
            self.requests.append(request)
            self.resumed.append(resume)
            run_id = resume or f"r{len(self.requests)}"
        started(run_id)
        if self.hook is not None:
            self.hook(request)
        return "failed" if request.logical_date.date().isoformat() in self.fail else "succeeded"

    def days(self) -> list[str]:
        return [r.logical_date.date().isoformat() for r in self.requests]


SPEC = BackfillSpec(date(2026, 1, 1), date(2026, 1, 6), targets=(3,))


def _start(state: SqliteStateStore, spec: BackfillSpec = SPEC) -> tuple[Backfills, str]:
    backfills = Backfills(state, "shop", clock=lambda: 1000.0)
    return backfills, backfills.create(spec, logical_dates(spec.start, spec.end)).backfill_id


def test_days_in_a_time_zone_and_cron_ticks_across_a_daylight_saving_change() -> None:
    paris = ZoneInfo("Europe/Paris")
    days = logical_dates(date(2026, 3, 28), date(2026, 3, 30), tz=paris)
    assert [d.isoformat() for d in days] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    ticks = logical_dates(date(2026, 3, 28), date(2026, 3, 29), cron="30 4 * * *", tz=paris)
    assert [t.astimezone(UTC).isoformat() for t in ticks] == ["2026-03-28T03:30:00+00:00", "2026-03-29T02:30:00+00:00"]
    # a schedule's ticks as its scheduler fires them: 02:30 is skipped in spring (03:30 CEST), repeated in autumn (once)
    spring = logical_dates(date(2026, 3, 29), date(2026, 3, 29), cron="30 2 * * *", tz=paris)
    autumn = logical_dates(date(2026, 10, 25), date(2026, 10, 25), cron="30 2 * * *", tz=paris)
    assert [t.isoformat() for t in [*spring, *autumn]] == ["2026-03-29T03:30:00+02:00", "2026-10-25T02:30:00+02:00"]
    with pytest.raises(ConfigError, match="before --from"):
        logical_dates(date(2026, 1, 2), date(2026, 1, 1))
    with pytest.raises(ConfigError, match="not a cron"):
        logical_dates(date(2026, 1, 1), date(2026, 1, 2), cron="every day")


def test_dates_run_in_order_as_backfill_requests(state: SqliteStateStore) -> None:
    backfills, backfill_id = _start(state)
    runs = FakeRuns()
    seen: list[tuple[str, int, int]] = []
    record = backfills.run(backfill_id, runs, on_date=lambda d, n, total: seen.append((d.status, n, total)))
    assert runs.days() == [f"2026-01-0{i}" for i in range(1, 7)]
    first = runs.requests[0]
    assert (first.trigger, first.name, first.targets) == ("backfill", f"backfill:{backfill_id}", (3,))
    assert first.options().as_dict()["logical_date"] == "2026-01-01T00:00:00+00:00"
    assert seen == [("succeeded", n, 6) for n in range(1, 7)]
    assert record.status == "succeeded"
    assert [d.run_id for d in state.backfill_dates(backfill_id)] == [f"r{i}" for i in range(1, 7)]


def test_a_failed_date_is_reported_and_the_others_go_on(state: SqliteStateStore) -> None:
    backfills, backfill_id = _start(state)

    def boom(request: RunRequest) -> None:
        if request.logical_date.day == 4:
            raise RuntimeError("the warehouse went away\nsecond line")

    record = backfills.run(backfill_id, FakeRuns(fail=frozenset({"2026-01-02"}), hook=boom))
    by_day = {d.logical_date[:10]: d for d in state.backfill_dates(backfill_id)}
    assert record.status == "failed"
    assert {day for day, d in by_day.items() if d.status == "failed"} == {"2026-01-02", "2026-01-04"}
    assert by_day["2026-01-02"].error == "run r2 failed"
    assert by_day["2026-01-04"].error == "the warehouse went away"
    assert sum(d.status == "succeeded" for d in by_day.values()) == 4


def test_an_interrupted_backfill_resumes_with_only_the_remaining_dates(state: SqliteStateStore) -> None:
    backfills, backfill_id = _start(state)
    stopper = FakeRuns(hook=lambda r: backfills.stop() if r.logical_date.day == 3 else None)
    record = backfills.run(backfill_id, stopper)
    assert (record.status, stopper.days()) == ("running", ["2026-01-01", "2026-01-02", "2026-01-03"])
    # a process killed mid-date leaves it running: its run is continued; one killed before it recorded the run's
    # id finds the run by its schedule and logical date
    state.save_backfill_date(backfill_id, BackfillDate("2026-01-04T00:00:00+00:00", "running", "dead", 1.0))
    state.save_backfill_date(backfill_id, BackfillDate("2026-01-05T00:00:00+00:00", "running", None, 1.0))
    options = {"schedule": f"backfill:{backfill_id}", "logical_date": "2026-01-05T00:00:00+00:00"}
    state.create_run(RunRecord("unrecorded", "shop", "running", 1.0, options=options), [])

    again = Backfills(state, "shop", clock=lambda: 2000.0)
    assert again.unfinished(BackfillSpec(SPEC.start, SPEC.end, (3,), parallel=4)) == state.get_backfill(backfill_id)
    rest = FakeRuns()
    record = again.run(backfill_id, rest)
    assert rest.days() == ["2026-01-04", "2026-01-05", "2026-01-06"]
    assert rest.resumed == ["dead", "unrecorded", None]
    assert (record.status, record.finished_at) == ("succeeded", 2000.0)
    assert again.unfinished(SPEC) is None


def test_failed_dates_are_run_again_on_resume_and_other_specs_do_not_match(state: SqliteStateStore) -> None:
    backfills, backfill_id = _start(state)
    backfills.run(backfill_id, FakeRuns(fail=frozenset({"2026-01-05"})))
    assert backfills.unfinished(BackfillSpec(SPEC.start, SPEC.end, (4,))) is None
    assert backfills.unfinished(SPEC) is not None
    retry = FakeRuns()
    assert backfills.run(backfill_id, retry).status == "succeeded"
    assert retry.days() == ["2026-01-05"]


def test_parallel_runs_at_most_n_dates_at_once(state: SqliteStateStore) -> None:
    backfills, backfill_id = _start(state)
    active, most = [0], [0]
    lock = threading.Lock()
    pair = threading.Barrier(2, timeout=30)  # two dates must be running together for each to go on

    def hook(request: RunRequest) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        pair.wait()
        with lock:
            active[0] -= 1

    runs = FakeRuns(hook=hook)
    assert backfills.run(backfill_id, runs, parallel=2).status == "succeeded"
    assert most[0] == 2
    assert sorted(runs.days()) == [f"2026-01-0{i}" for i in range(1, 7)]
    assert sorted(runs.days()[:2]) == ["2026-01-01", "2026-01-02"]  # the first two started first


def test_first_alone_runs_dates_one_at_a_time_until_one_succeeded(state: SqliteStateStore) -> None:
    """With objects that do not depend on the date (``shared_objects``), the first date runs them alone and the
    next dates find them fresh; a first date that fails leaves the next one alone too."""
    backfills, backfill_id = _start(state)
    active: list[int] = [0]
    alone: dict[int, bool] = {}
    lock = threading.Lock()
    wave = threading.Barrier(3, timeout=30)  # days 3-5 must run together once day 2 succeeded

    def hook(request: RunRequest) -> None:
        day = request.logical_date.day
        with lock:
            active[0] += 1
            alone[day] = active[0] == 1
        if day in (1, 2):
            threading.Event().wait(0.05)  # room for a date started beside it to show in `alone`
        elif day in (3, 4, 5):
            wave.wait()
        with lock:
            active[0] -= 1

    runs = FakeRuns(fail=frozenset({"2026-01-01"}), hook=hook)
    assert backfills.run(backfill_id, runs, parallel=3, first_alone=True).status == "failed"
    assert runs.days()[:2] == ["2026-01-01", "2026-01-02"]  # in date order
    assert alone[1] and alone[2]  # day 1 failed alone, so day 2 ran alone too
    assert sorted(runs.days()) == [f"2026-01-0{i}" for i in range(1, 7)]


def test_the_dates_are_midnights_of_the_range_inclusive() -> None:
    dates = logical_dates(date(2026, 1, 30), date(2026, 2, 2))
    assert dates[0] == datetime(2026, 1, 30, tzinfo=UTC) and dates[-1] == datetime(2026, 2, 2, tzinfo=UTC)
    assert len(dates) == 4


def test_parallel_dates_are_refused_only_for_a_replaced_table_depending_on_the_date(tmp_path: Path) -> None:
    """Each date writes its own lake output of a date-dependent object (sluice.lake.dated); a destination emptied by
    each date (mode replace) is what stays refused, naming the object (a new user's trial found one date's rows
    twice in the table and another's missing before dates were kept apart)."""
    from tests.helpers import write_yaml

    from sluice.project.load import load_project
    from sluice.scheduling.backfills import check_parallel

    text = (
        "name: shop\nconnections:\n  dw: duckdb:///dw.duckdb\nobjects:\n  - {id: 1001, name: tx}\n  - {id: 1002, name: other}\n"
        "  - {id: 2001, name: orders, parents: [1001], sql: \"select *, '{{ ds }}' as day from tx\"}\n"
        "  - {id: 3001, name: daily, parents: [2001], sql: 'select * from orders', "
        "destination: {connection: dw, table: daily, mode: replace}}\n"
        "  - {id: 3002, name: kept, parents: [2001], sql: 'select * from orders', "
        "destination: {connection: dw, table: kept, mode: append}}\n"
    )
    project = load_project(write_yaml(tmp_path, text))
    with pytest.raises(ConfigError, match=r"--parallel 2: object 3001 \(daily\) depends on the logical date and writes "
                       r"table 'daily' with mode replace"):  # fmt: skip
        check_parallel(project, None, 2)
    check_parallel(project, None, 1)  # in order: the table ends with the last date's rows
    check_parallel(project, (3002,), 4)  # append: each date adds its own rows
    check_parallel(project, (1002,), 4)  # nothing planned depends on the date


def test_a_cancelled_date_runs_again_under_the_cancelled_runs_load_key(state: SqliteStateStore) -> None:
    """A date whose run was cancelled (a second Ctrl-C) runs again on resume as a new run recording its loads under
    the cancelled run's key (in turn, under the key that run was given), so an append the cancelled run committed is
    not loaded twice; a date that failed gets a key of its own."""
    backfills, backfill_id = _start(state, BackfillSpec(date(2026, 1, 1), date(2026, 1, 3)))
    cancelled = {"2026-01-01": "c1", "2026-01-02": "c2"}
    state.create_run(RunRecord("c1", "shop", "cancelled", 1.0), [])
    state.create_run(RunRecord("c2", "shop", "cancelled", 1.0, options={"load_key": "c0"}), [])
    state.create_run(RunRecord("f3", "shop", "failed", 1.0), [])
    for day, run_id in [*cancelled.items(), ("2026-01-03", "f3")]:
        error = f"run {run_id} {state.get_run(run_id).status}"
        state.save_backfill_date(backfill_id, BackfillDate(f"{day}T00:00:00+00:00", "failed", run_id, 1.0, 2.0, error))
    again = FakeRuns()
    assert backfills.run(backfill_id, again).status == "succeeded"
    assert [(r.logical_date.day, r.load_key) for r in again.requests] == [(1, "c1"), (2, "c0"), (3, None)]
    assert [r.options().load_key for r in again.requests] == ["c1", "c0", None]
