"""The history part of the StateStore contract (backfills, sensor cursors, run filters, pruning), run over every
backend like ``test_contract.py``."""

from __future__ import annotations

import math
import threading

import pytest
from tests.state.test_contract import OpenStore, open_store, store

from sluice.errors import BackfillNotFound
from sluice.state.base import (
    BackfillDate,
    BackfillRecord,
    ObjectState,
    RunRecord,
    SensorCursor,
    StateStore,
    TickRecord,
)

__all__ = ["open_store", "store"]


def test_backfill_and_its_dates_round_trip(store: StateStore) -> None:
    spec = {"from": "2026-01-01", "to": "2026-01-03", "targets": [3], "parallel": 2, "schedule": None}
    record = BackfillRecord("b1", "shop", "running", 100.5, None, spec)
    store.create_backfill(record, ["2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"])
    assert store.get_backfill("b1") == record
    dates = store.backfill_dates("b1")
    assert [d.logical_date for d in dates] == ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    assert {d.status for d in dates} == {"pending"}

    done = BackfillDate("2026-01-01T00:00:00+00:00", "failed", "r9", 101.0, 102.25, "object 3 failed")
    store.save_backfill_date("b1", done)
    assert store.backfill_dates("b1")[0] == done
    store.finish_backfill("b1", "failed", 103.0)
    assert (store.get_backfill("b1").status, store.get_backfill("b1").finished_at) == ("failed", 103.0)


def test_unknown_backfill_raises_and_list_is_per_project_most_recent_first(store: StateStore) -> None:
    with pytest.raises(BackfillNotFound, match="nope"):
        store.get_backfill("nope")
    store.create_backfill(BackfillRecord("b1", "shop", "running", 1.0), [])
    store.create_backfill(BackfillRecord("b2", "shop", "running", 2.0), [])
    store.create_backfill(BackfillRecord("x1", "other", "running", 3.0), [])
    assert [b.backfill_id for b in store.list_backfills("shop")] == ["b2", "b1"]
    assert [b.backfill_id for b in store.list_backfills("shop", limit=1)] == ["b2"]


def test_sensor_cursors_are_replaced_per_project(store: StateStore) -> None:
    assert store.sensor_cursor("shop", "files") is None
    first = SensorCursor("files", {"seen": {"a.csv": "e1"}}, None, None, 10.0)
    store.save_sensor_cursor("shop", first)
    second = SensorCursor("files", {"seen": {"a.csv": "e1", "b.csv": "e2"}}, 20.0, "files@2026", 20.0)
    store.save_sensor_cursor("shop", second)
    store.save_sensor_cursor("other", SensorCursor("files", {}, None, None, 1.0))
    assert store.sensor_cursor("shop", "files") == second
    assert [c.name for c in store.sensor_cursors("shop")] == ["files"]


def _run(run_id: str, started_at: float, status: str = "succeeded", schedule: str | None = None) -> RunRecord:
    finished = None if status == "running" else started_at + 1
    return RunRecord(run_id, "shop", status, started_at, finished, options={"schedule": schedule, "trigger": "manual"})


def test_find_runs_filters_by_status_schedule_and_dates(store: StateStore) -> None:
    store.create_run(_run("r1", 100.0, "succeeded", "nightly"), [])
    store.create_run(_run("r2", 200.0, "failed", "nightly"), [])
    store.create_run(_run("r3", 300.0, "succeeded", None), [])
    store.create_run(_run("r4", 400.0, "succeeded", "backfill:b1"), [])
    ids = lambda **kw: [r.run_id for r in store.find_runs("shop", **kw)]  # noqa: E731
    assert ids() == ["r4", "r3", "r2", "r1"]
    assert ids(status="succeeded") == ["r4", "r3", "r1"]
    assert ids(schedule="nightly") == ["r2", "r1"]
    assert ids(since=200.0, until=400.0) == ["r3", "r2"]
    assert ids(status="succeeded", schedule="nightly", since=50.0) == ["r1"]
    assert ids(limit=1) == ["r4"]
    assert store.find_runs("other") == []


def test_prune_removes_what_finished_before_the_cutoff_and_keeps_running_ones(store: StateStore) -> None:
    objects = [ObjectState(1, "ingest", "loaded"), ObjectState(2, "ingest", "loaded")]
    store.create_run(_run("old", 100.0), objects)
    store.create_run(_run("stuck", 50.0, "running"), objects)
    store.create_run(_run("new", 1000.0), objects)
    store.create_run(RunRecord("elsewhere", "other", "succeeded", 10.0, 11.0), objects)
    store.create_backfill(BackfillRecord("b-old", "shop", "succeeded", 90.0, 150.0), ["d1", "d2"])
    store.create_backfill(BackfillRecord("b-new", "shop", "succeeded", 900.0, 1500.0), ["d1"])

    ticks = [
        TickRecord("shop", "nightly", "2026-01-01T02:00:00+00:00", "fired", 100.0, "old"),
        TickRecord("shop", "nightly", "2026-01-02T02:00:00+00:00", "fired", 110.0, "stuck"),
        TickRecord("shop", "nightly", "2026-01-03T02:00:00+00:00", "missed", 120.0),
        TickRecord("shop", "nightly", "2026-01-04T02:00:00+00:00", "missed", 130.0),
        TickRecord("shop", "hourly", "2026-01-01T01:00:00+00:00", "missed", 10.0),
        TickRecord("other", "nightly", "2026-01-01T02:00:00+00:00", "missed", 10.0),
    ]
    store.record_ticks(ticks)
    for key, holder, expires_at in [
        ("shop", "a", 100.0),  # the scheduler's lease, expired before the cutoff
        ("shop/backfill:b-old", "b", 200.0),
        ("shop/backfill:b-new", "c", 2000.0),  # not expired yet
        ("shop/run:r-old", "f", 300.0),  # a killed coordinator's run lease
        ("shop/run:r-new", "g", 2000.0),
        ("shopping", "d", 100.0),  # another project's
        ("other/backfill:x", "e", 100.0),
    ]:
        assert store.acquire_lease(key, holder, expires_at - 30.0, 30.0)
    store.claim_alert("shop", "old", 900.0, 100.0)
    store.claim_alert("shop", "folding", 900.0, 100.0)
    store.claim_alert("shop", "folding", 900.0, 600.0)  # a repeat held after the cutoff: kept
    store.claim_alert("shop", "new", 900.0, 600.0)
    store.claim_alert("other", "old", 900.0, 100.0)
    # kept: the stuck run's tick, each schedule's latest (nightly 01-04, hourly's only one), the other project's
    expected = {"schedule_ticks": 2, "run_objects": 2, "runs": 1, "backfill_dates": 2, "backfills": 1}
    expected |= {"alert_keys": 1, "scheduler_leases": 3}
    assert store.prune_history("shop", 500.0, dry_run=True) == expected
    assert {r.run_id for r in store.list_runs()} == {"old", "stuck", "new", "elsewhere"}
    assert store.prune_history("shop", 500.0) == expected

    assert {r.run_id for r in store.list_runs()} == {"stuck", "new", "elsewhere"}
    assert store.object_states("old") == {}
    assert len(store.object_states("stuck")) == 2
    assert [b.backfill_id for b in store.list_backfills("shop")] == ["b-new"]
    assert store.backfill_dates("b-old") == []
    assert [t.logical_date[:10] for t in store.ticks("shop", "nightly")] == ["2026-01-04", "2026-01-02"]
    assert len(store.ticks("shop", "hourly")) == 1 and len(store.ticks("other")) == 1
    assert store.lease("shop") is None and store.lease("shop/backfill:b-old") is None and store.lease("shop/run:r-old") is None
    kept = ("shop/backfill:b-new", "shop/run:r-new", "shopping", "other/backfill:x")
    assert all(store.lease(key) is not None for key in kept)
    assert store.claim_alert("shop", "new", 900.0, 700.0) == (False, 0, None)
    assert store.claim_alert("shop", "folding", 900.0, 1100.0) == (True, 1, 600.0)
    again = {"schedule_ticks": 0, "run_objects": 0, "runs": 0, "backfill_dates": 0, "backfills": 0}
    again |= {"alert_keys": 0, "scheduler_leases": 0}
    assert store.prune_history("shop", 500.0) == again


def test_the_dates_of_several_backfills_in_one_call(store: StateStore) -> None:
    days = ["2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]
    store.create_backfill(BackfillRecord("b1", "shop", "running", 1.0), days)
    store.create_backfill(BackfillRecord("b2", "shop", "running", 2.0), ["2026-02-01T00:00:00+00:00"])
    store.create_backfill(BackfillRecord("b3", "shop", "running", 3.0), [])
    done = BackfillDate("2026-01-01T00:00:00+00:00", "succeeded", "r1", 1.0, 2.0)
    store.save_backfill_date("b1", done)
    found = store.backfills_dates(["b2", "b1", "b3", "nope"])
    assert list(found) == ["b2", "b1", "b3", "nope"]
    assert found["b1"] == store.backfill_dates("b1") and found["b1"][0] == done
    assert found["b2"] == store.backfill_dates("b2") and len(found["b2"]) == 1
    assert found["b3"] == [] and found["nope"] == []
    assert store.backfills_dates([]) == {}


def test_a_sensor_cursor_is_saved_with_the_tick_it_fired(store: StateStore) -> None:
    cursor = SensorCursor("landing", {"seen": {"a.csv": [1, 2]}}, 10.0, "landing@t1", 10.0)
    tick = TickRecord("shop", "landing", "landing@t1", "fired", 10.0, "r1")
    assert store.record_ticks([tick], [("shop", cursor)]) == [tick]
    assert store.sensor_cursor("shop", "landing") == cursor
    assert [t.run_id for t in store.ticks("shop", "landing")] == ["r1"]


def test_alert_keys_are_claimed_once_per_window_and_count_the_repeats(store: StateStore) -> None:
    assert store.claim_alert("shop", "k", 900.0, 0.0) == (True, 0, None)
    assert store.claim_alert("shop", "k", 900.0, 100.0) == (False, 0, None)
    assert store.claim_alert("other", "k", 900.0, 100.0) == (True, 0, None)  # per project
    assert store.claim_alert("shop", "k", 900.0, 899.0) == (False, 0, None)
    assert store.claim_alert("shop", "k", 900.0, 900.0) == (True, 2, 100.0)
    assert store.claim_alert("shop", "k", 0.0, 901.0) == (True, 0, None)  # no window: every alert goes out
    assert store.claim_alert("shop", "once", math.inf, 1.0) == (True, 0, None)
    assert store.claim_alert("shop", "once", math.inf, 1e9) == (False, 0, None)


def test_of_processes_claiming_an_alert_key_at_once_one_sends(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(6)]  # a connection each, as processes have
    barrier = threading.Barrier(len(stores))
    answers: list[bool] = []

    def claim(store: StateStore) -> None:
        barrier.wait(10)
        answers.append(store.claim_alert("shop", "sla nightly|run r1", math.inf, 100.0)[0])

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == [False] * 5 + [True]
