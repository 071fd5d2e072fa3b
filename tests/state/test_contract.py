"""The StateStore contract, run over every backend (SQLite in a temporary folder, PostgreSQL in a fresh database)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sluice.errors import RunNotFound
from sluice.state.base import CheckResult, LatestOutput, ObjectState, RunRecord, StateStore, TickRecord
from sluice.state.postgres import PostgresStateStore
from sluice.state.sqlite import SqliteStateStore

OpenStore = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one location; every store opened is closed after the test."""
    opened: list[StateStore] = []
    url = request.getfixturevalue("pg_db_url") if request.param == "postgres" else ""

    def open_() -> StateStore:
        store: StateStore = SqliteStateStore(tmp_path / "state.db") if request.param == "sqlite" else PostgresStateStore(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> StateStore:
    return open_store()


def run(run_id: str, project: str = "shop", started_at: float = 1.0, status: str = "running") -> RunRecord:
    return RunRecord(run_id=run_id, project=project, status=status, started_at=started_at)


def output(object_id: int, fingerprint: str = "f1", run_id: str = "r1") -> LatestOutput:
    return LatestOutput(object_id, fingerprint, f"hash-{fingerprint}", f"/data/{object_id}.parquet", 10 * object_id, run_id, 5.5)


def test_create_and_get_run_round_trips_every_field(store: StateStore) -> None:
    record = RunRecord(
        run_id="r1",
        project="shop",
        status="running",
        started_at=1700000000.125,
        targets=[3, 1, 2],
        options={"full_refresh": True, "workers": 4, "only": ["a", "b"], "nested": {"x": None}},
        first_offset=42,
        checkpoint=41,
    )
    store.create_run(record, [])
    assert store.get_run("r1") == record


def test_get_unknown_run_raises_run_not_found(store: StateStore) -> None:
    store.create_run(run("r1"), [])
    with pytest.raises(RunNotFound, match="nope"):
        store.get_run("nope")


def test_list_runs_most_recent_first_with_limit_and_project(store: StateStore) -> None:
    store.create_run(run("a1", "a", started_at=1.0), [])
    store.create_run(run("b1", "b", started_at=2.0), [])
    store.create_run(run("a3", "a", started_at=4.0), [])
    store.create_run(run("a2", "a", started_at=3.0), [])

    assert [r.run_id for r in store.list_runs()] == ["a3", "a2", "b1", "a1"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["a3", "a2"]
    assert [r.run_id for r in store.list_runs("a")] == ["a3", "a2", "a1"]
    assert [r.run_id for r in store.list_runs("a", limit=1)] == ["a3"]
    assert [r.run_id for r in store.list_runs("b")] == ["b1"]
    assert store.list_runs("unknown") == []


def test_create_run_records_planned_objects(store: StateStore) -> None:
    planned = [ObjectState(1, "extract", "ready"), ObjectState(2, "load")]
    store.create_run(run("r1"), planned)
    store.create_run(run("r2"), [ObjectState(1, "extract")])

    assert store.object_states("r1") == {1: planned[0], 2: planned[1]}
    assert store.object_states("r2") == {1: ObjectState(1, "extract")}
    assert store.object_states("unknown") == {}


def test_object_state_round_trips_every_field_including_none(store: StateStore) -> None:
    full = ObjectState(
        object_id=7,
        stage="transform",
        status="failed",
        attempt=3,
        rows=2**40,
        duration_s=12.5,
        location="s3://bucket/obj 7/é.parquet",
        content_hash="sha256:abc",
        fingerprint="fp-1",
        error="Traceback (most recent call last):\n  boom 'quoted' \"double\"",
        reason="upstream failed",
        ready_at=1700000000.25,
        started_at=1700000001.5,
        finished_at=1700000013.75,
    )
    empty = ObjectState(object_id=8, stage="load")
    store.create_run(run("r1"), [full, empty])
    assert store.object_states("r1") == {7: full, 8: empty}


def test_save_upserts_object_states_and_the_checkpoint(store: StateStore) -> None:
    store.create_run(run("r1"), [ObjectState(1, "extract"), ObjectState(2, "load")])
    store.create_run(run("r2"), [ObjectState(1, "extract")])

    started = ObjectState(1, "extract", "running", attempt=1, started_at=10.0)
    added = ObjectState(3, "load", "ready", ready_at=11.0)
    store.save("r1", [started, added], checkpoint=17)

    assert store.object_states("r1") == {1: started, 2: ObjectState(2, "load"), 3: added}
    assert store.get_run("r1").checkpoint == 17
    assert store.object_states("r2") == {1: ObjectState(1, "extract")}
    assert store.get_run("r2").checkpoint == -1

    loaded = ObjectState(1, "extract", "loaded", attempt=1, rows=5, started_at=10.0, finished_at=12.0)
    store.save("r1", [loaded])
    assert store.object_states("r1")[1] == loaded
    assert store.get_run("r1").checkpoint == 17, "a save without a checkpoint keeps the last one"


def test_finish_run(store: StateStore) -> None:
    store.create_run(run("r1"), [])
    store.create_run(run("r2", started_at=2.0), [])
    store.finish_run("r1", "succeeded", 99.5)

    finished = store.get_run("r1")
    assert (finished.status, finished.finished_at) == ("succeeded", 99.5)
    assert (store.get_run("r2").status, store.get_run("r2").finished_at) == ("running", None)


def test_set_run_status_changes_only_a_run_in_the_expected_status(store: StateStore) -> None:
    store.create_run(run("r1"), [])
    assert store.set_run_status("r1", "interrupted", 7.5, expected="running")
    assert not store.set_run_status("r1", "interrupted", 8.5, expected="running"), "already interrupted: changed once"
    assert (store.get_run("r1").status, store.get_run("r1").finished_at) == ("interrupted", 7.5)
    assert store.set_run_status("r1", "running", None, expected="interrupted")  # resumed: not finished any more
    assert (store.get_run("r1").status, store.get_run("r1").finished_at) == ("running", None)
    assert not store.set_run_status("unknown", "interrupted", 1.0, expected="running")


def test_unfinished_run_is_the_latest_running_run_of_the_project_only(store: StateStore) -> None:
    assert store.unfinished_run("shop") is None
    store.create_run(run("old", started_at=1.0), [])
    store.create_run(run("latest", started_at=2.0), [])
    store.create_run(run("done", started_at=3.0, status="succeeded"), [])
    store.create_run(run("other", project="other", started_at=4.0), [])

    unfinished = store.unfinished_run("shop")
    assert unfinished is not None and unfinished.run_id == "latest"

    store.finish_run("latest", "failed", 5.0)
    unfinished = store.unfinished_run("shop")
    assert unfinished is not None and unfinished.run_id == "old"

    store.finish_run("old", "abandoned", 6.0)
    assert store.unfinished_run("shop") is None
    other = store.unfinished_run("other")
    assert other is not None and other.run_id == "other"


def test_record_and_latest_outputs_per_project(store: StateStore) -> None:
    assert store.latest_outputs("shop") == {}
    store.record_outputs("shop", [output(1), output(2, "f2")])
    store.record_outputs("crm", [output(1, "crm-f1", run_id="c1")])
    store.record_outputs("shop", [])

    assert store.latest_outputs("shop") == {1: output(1), 2: output(2, "f2")}
    assert store.latest_outputs("crm") == {1: output(1, "crm-f1", run_id="c1")}

    newer = LatestOutput(1, "f9", "hash-f9", None, 0, "r9", 9.0)
    store.record_outputs("shop", [newer])
    assert store.latest_outputs("shop") == {1: newer, 2: output(2, "f2")}
    assert store.latest_outputs("crm")[1] == output(1, "crm-f1", run_id="c1")


def test_a_new_store_on_the_same_location_sees_everything(open_store: OpenStore) -> None:
    first = open_store()
    first.create_run(run("r1"), [ObjectState(1, "extract")])
    first.save("r1", [ObjectState(1, "extract", "loaded", rows=3)], checkpoint=4)
    first.record_outputs("shop", [output(1)])
    first.close()

    second = open_store()
    second.ping()
    assert second.get_run("r1").checkpoint == 4
    assert second.object_states("r1")[1].rows == 3
    assert second.latest_outputs("shop") == {1: output(1)}


def test_concurrent_saves_from_several_threads_lose_no_update(store: StateStore) -> None:
    threads, objects_per_thread, rounds = 6, 20, 15
    store.create_run(run("r1"), [ObjectState(i, "load") for i in range(threads * objects_per_thread)])
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            ids = range(index * objects_per_thread, (index + 1) * objects_per_thread)
            start.wait()
            for attempt in range(1, rounds + 1):
                store.save("r1", [ObjectState(i, "load", "running", attempt=attempt) for i in ids], checkpoint=index)
                store.record_outputs("shop", [output(i, f"f{attempt}") for i in ids])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()

    assert errors == []
    states = store.object_states("r1")
    assert len(states) == threads * objects_per_thread
    assert {state.attempt for state in states.values()} == {rounds}
    assert store.get_run("r1").checkpoint in range(threads)
    outputs = store.latest_outputs("shop")
    assert len(outputs) == threads * objects_per_thread
    assert {o.fingerprint for o in outputs.values()} == {f"f{rounds}"}


def test_source_cursors_are_saved_replaced_per_project_and_reset(open_store: OpenStore) -> None:
    store = open_store()
    assert store.source_cursors("shop") == {}
    store.save_source_cursor("shop", 1001, '"2024-01-05T00:00:00Z"', 10.0)
    store.save_source_cursor("shop", 1002, "42", 10.0)
    store.save_source_cursor("other", 1001, '"x"', 10.0)
    store.save_source_cursor("shop", 1001, '"2024-01-07T00:00:00Z"', 11.0)
    assert dict(store.source_cursors("shop")) == {1001: '"2024-01-07T00:00:00Z"', 1002: "42"}
    assert dict(open_store().source_cursors("shop")) == {1001: '"2024-01-07T00:00:00Z"', 1002: "42"}
    assert store.reset_source_cursors("shop", [1002, 1003]) == [1002]
    assert dict(store.source_cursors("shop")) == {1001: '"2024-01-07T00:00:00Z"'}
    store.save_source_cursor("shop", 1004, "1", 12.0)
    assert store.reset_source_cursors("shop") == [1001, 1004]
    assert store.source_cursors("shop") == {}
    assert dict(store.source_cursors("other")) == {1001: '"x"'}
    assert store.reset_source_cursors("shop") == []


def check_result(run_id: str, object_id: int, check: str, status: str = "passed", at: float = 1.0) -> CheckResult:
    return CheckResult(
        run_id=run_id,
        project="shop",
        object_id=object_id,
        object=f"obj_{object_id}",
        check=check,
        kind="not_null",
        severity="error",
        status=status,
        failing_rows=0 if status == "passed" else 3,
        sample=[] if status == "passed" else ["id=1", "id=2"],
        message="passed" if status == "passed" else "3 failing rows",
        duration_s=0.25,
        checked_at=at,
    )


def test_check_results_are_kept_and_filtered_by_run_and_object_newest_first(open_store: OpenStore) -> None:
    store = open_store()
    store.record_check_results([check_result("r1", 1, "a", at=1.0), check_result("r1", 2, "b", "failed", at=2.0)])
    store.record_check_results([check_result("r2", 1, "a", "failed", at=3.0)])
    store.record_check_results([])
    again = open_store()
    assert [(r.run_id, r.check) for r in again.check_results("shop")] == [("r2", "a"), ("r1", "b"), ("r1", "a")]
    assert again.check_results("shop", run_id="r1", object_id=2) == [check_result("r1", 2, "b", "failed", at=2.0)]
    assert [r.run_id for r in again.check_results("shop", object_id=1, limit=1)] == ["r2"]
    assert again.check_results("other") == []


def test_check_results_older_than_a_time_are_pruned_per_project(store: StateStore) -> None:
    store.record_check_results([check_result("r1", 1, "a", at=1.0), check_result("r2", 1, "a", at=5.0)])
    assert store.prune_check_results("other", 10.0) == 0
    assert store.prune_check_results("shop", 5.0) == 1
    assert [r.run_id for r in store.check_results("shop")] == ["r2"]


# ----- schedules: tick records and the scheduler lease ---------------------------------------------------------


def tick(schedule: str, date: str, status: str = "fired", project: str = "shop", run_id: str | None = None) -> TickRecord:
    return TickRecord(project, schedule, date, status, 1.0, run_id)


def test_a_tick_is_recorded_once_whoever_records_it(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    won = first.record_ticks([tick("nightly", "2026-01-01T02:00:00+00:00"), tick("hourly", "2026-01-01T02:00:00+00:00")])
    assert [(t.schedule, t.logical_date) for t in won] == [
        ("nightly", "2026-01-01T02:00:00+00:00"),
        ("hourly", "2026-01-01T02:00:00+00:00"),
    ]
    again = second.record_ticks([tick("nightly", "2026-01-01T02:00:00+00:00"), tick("nightly", "2026-01-02T02:00:00+00:00")])
    assert [t.logical_date for t in again] == ["2026-01-02T02:00:00+00:00"]
    assert second.record_ticks([]) == []


def test_ticks_from_threads_at_once_are_each_recorded_by_one(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(4)]
    dates = [f"2026-01-01T02:{minute:02d}:00+00:00" for minute in range(30)]
    won: list[list[TickRecord]] = [[] for _ in stores]

    def record(index: int) -> None:
        for date in dates:
            won[index].extend(stores[index].record_ticks([tick("every-minute", date)]))

    threads = [threading.Thread(target=record, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(t.logical_date for batch in won for t in batch) == dates


def test_last_ticks_ticks_and_their_runs_status(store: StateStore) -> None:
    store.record_ticks(
        [
            tick("nightly", "2026-01-01T02:00:00+00:00", run_id="r2"),
            tick("nightly", "2026-01-02T02:00:00+00:00", run_id="r1"),
            tick("hourly", "2026-01-01T05:00:00+00:00", "missed"),
            tick("nightly", "2026-01-02T02:00:00+00:00", project="other", run_id="r9"),
        ]
    )
    store.create_runs([(run("r1"), []), (run("r2", status="succeeded"), [ObjectState(1001, "ingest")])])
    assert store.object_states("r2") == {1001: ObjectState(1001, "ingest")}
    last = store.last_ticks("shop")
    assert sorted(last) == ["hourly", "nightly"]
    assert (last["nightly"].logical_date, last["nightly"].run_id, last["nightly"].run_status) == (
        "2026-01-02T02:00:00+00:00",
        "r1",
        "running",
    )
    assert last["hourly"].status == "missed" and last["hourly"].run_id is None and last["hourly"].run_status is None
    assert [(t.logical_date, t.run_status) for t in store.ticks("shop", "nightly")] == [
        ("2026-01-02T02:00:00+00:00", "running"),
        ("2026-01-01T02:00:00+00:00", "succeeded"),
    ]
    assert [t.schedule for t in store.ticks("shop", limit=2)] == ["nightly", "hourly"]  # latest logical date first
    assert [t.run_id for t in store.running_ticks("shop")] == ["r1"]
    assert store.running_ticks("other") == []


def test_the_lease_is_held_by_one_until_it_expires_or_is_released(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    assert a.lease("shop") is None
    assert a.acquire_lease("shop", "a", now=100.0, ttl_s=10.0)
    assert not b.acquire_lease("shop", "b", now=105.0, ttl_s=10.0)
    assert a.acquire_lease("shop", "a", now=108.0, ttl_s=10.0)  # renewed until 118
    assert not b.acquire_lease("shop", "b", now=117.0, ttl_s=10.0)
    assert b.acquire_lease("shop", "b", now=118.5, ttl_s=10.0)  # expired: taken over
    lease = a.lease("shop")
    assert lease is not None and (lease.holder, lease.expires_at) == ("b", 128.5)
    assert not a.acquire_lease("shop", "a", now=120.0, ttl_s=10.0)
    assert a.acquire_lease("other", "a", now=120.0, ttl_s=10.0)  # one lease per project
    a.release_lease("shop", "a")  # not a's: nothing happens
    assert not a.acquire_lease("shop", "a", now=121.0, ttl_s=10.0)
    b.release_lease("shop", "b")
    assert a.acquire_lease("shop", "a", now=121.0, ttl_s=10.0)


def test_what_a_check_covered_round_trips_and_a_store_made_before_it_gains_the_columns(
    open_store: OpenStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = open_store()
    store.close()
    old = ["covered", "rows_checked"]  # a check_results table as an earlier version made it
    if isinstance(store, SqliteStateStore):
        import sqlite3

        with sqlite3.connect(tmp_path / "state.db") as db:
            for column in old:
                db.execute(f'ALTER TABLE check_results DROP COLUMN "{column}"')
    else:
        import psycopg

        with psycopg.connect(str(request.getfixturevalue("pg_db_url")), autocommit=True) as conn:
            for column in old:
                conn.execute(f'ALTER TABLE sluice_state.check_results DROP COLUMN "{column}"')
    store = open_store()
    kept = check_result("r1", 1, "a")
    store.record_check_results([kept, dataclasses.replace(kept, check="b", covered="load", rows_checked=42)])
    found = {r.check: (r.covered, r.rows_checked) for r in open_store().check_results("shop")}
    assert found == {"a": ("table", None), "b": ("load", 42)}
