"""Running projects in process: ordering, failure propagation, retries, freshness, events."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import (
    check_ordering,
    events_of,
    load,
    logged,
    rewrite_keeping_size_and_mtime,
    seed_project,
    wait_for,
    write_yaml,
)
from sluice import events as ev
from sluice.lake.local import LocalLake
from sluice.project.model import Project
from sluice.runtime.run import ACTIVITY_ENTRY_BYTES, RunActivity, RunOptions, open_backends, run_project
from sluice.state.base import ObjectState


def test_seed_scenario_with_forced_failure(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0, fail=frozenset({2005})))
    assert summary.status == "failed"
    states = summary.objects
    assert states[2005].status == "failed"
    assert states[2005].attempt == project.retry.attempts == 3
    assert "forced failure" in (states[2005].error or "")
    assert states[3004].status == "skipped" and states[3004].reason == "parent 2005 failed"
    assert states[3006].status == "skipped"
    loaded = {oid for oid, s in states.items() if s.status == "loaded"}
    assert loaded == set(states) - {2005, 3004, 3006}
    assert 1002 not in states  # no target needs it
    log = events_of(project, summary.run_id)
    check_ordering(project, log)
    failed = [e for _, e in log if isinstance(e, ev.ObjectFailed)]
    assert [e.attempt for e in failed] == [1, 2, 3]
    skipped = {e.object_id for _, e in log if isinstance(e, ev.ObjectSkipped)}
    assert skipped == {3004, 3006}


def test_second_run_skips_fresh_objects_and_force_reruns(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    first = run_project(project, RunOptions())
    assert first.status == "succeeded"
    second = run_project(project, RunOptions())
    assert second.status == "succeeded"
    assert {s.status for s in second.objects.values()} == {"skipped"}
    assert all((s.reason or "").startswith("fresh") for s in second.objects.values())
    third = run_project(project, RunOptions(force=True))
    assert {s.status for s in third.objects.values()} == {"loaded"}


def test_failed_object_reruns_next_time_and_fresh_others_skip(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    run_project(project, RunOptions(fail=frozenset({2005})))
    again = run_project(project, RunOptions())
    statuses = {oid: s.status for oid, s in again.objects.items()}
    assert statuses[2005] == statuses[3004] == statuses[3006] == "loaded"
    assert statuses[1001] == "skipped"
    check_ordering(project, events_of(project, again.run_id))


def test_targets_limit_the_run(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    summary = run_project(project, RunOptions(targets=[3002]))
    assert set(summary.objects) == {1003, 1004, 2004, 3002}


def test_transient_failure_retried_until_success(tmp_path: Path) -> None:
    folder = tmp_path / "flaky"
    write_yaml(
        folder,
        """
retry: {attempts: 4, backoff_s: 0.01}
objects:
  - {id: 1001, name: base, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 2001, name: flaky, parents: [1001], python: "flaky:run"}
  - {id: 3001, name: final, parents: [2001], sql: "select count(*) as n from flaky"}
""",
    )
    (folder / "flaky.py").write_text(
        "from pathlib import Path\n"
        "def run(base):\n"
        "    marker = Path(__file__).with_name('calls')\n"
        "    calls = int(marker.read_text()) + 1 if marker.exists() else 1\n"
        "    marker.write_text(str(calls))\n"
        "    if calls < 3:\n"
        "        raise ConnectionError(f'flaky call {calls}')\n"
        "    return base\n"
    )
    project = load(folder)
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded"
    assert summary.objects[2001].attempt == 3
    assert summary.objects[3001].rows == 1
    failures = [e for _, e in events_of(project, summary.run_id) if isinstance(e, ev.ObjectFailed)]
    where = f"(at {folder.resolve() / 'flaky.py'}:7, in run)"  # a user function's error: its type and its line
    assert [(e.object_id, e.attempt, e.error) for e in failures] == [
        (2001, 1, f"ConnectionError: flaky call 1 {where}"),
        (2001, 2, f"ConnectionError: flaky call 2 {where}"),
    ]


def test_terminal_error_is_not_retried_and_independent_branch_carries_on(tmp_path: Path) -> None:
    folder = tmp_path / "terminal"
    write_yaml(
        folder,
        """
objects:
  - {id: 1001, name: a, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 2001, name: broken, parents: [1001], sql: "selec nonsense from a"}
  - {id: 2002, name: fine, parents: [1001], sql: "select * from a"}
  - {id: 3001, name: after_broken, parents: [2001], sql: "select * from broken"}
  - {id: 3002, name: after_fine, parents: [2002], sql: "select count(*) as n from fine"}
""",
    )
    project = load(folder)
    summary = run_project(project, RunOptions())
    assert summary.status == "failed"
    assert summary.objects[2001].status == "failed"
    assert summary.objects[2001].attempt == 1
    assert summary.objects[3001].status == "skipped"
    assert summary.objects[3002].status == "loaded"
    assert summary.objects[3002].rows == 1


def test_every_planned_object_processed_once_in_a_wide_dag(tmp_path: Path) -> None:
    lines = ["stages:", "  ingest: {ids: 1000-1999, concurrency: 3}", "objects:"]
    for i in range(60):
        lines.append(f"  - {{id: {1000 + i}}}")
    for i in range(60):
        lines.append(f"  - {{id: {2000 + i}, parents: [{1000 + i}, {1000 + (i + 1) % 60}]}}")
    for i in range(30):
        lines.append(f"  - {{id: {3000 + i}, parents: [{2000 + 2 * i}, {2000 + 2 * i + 1}]}}")
    project = load(write_yaml(tmp_path / "wide", "\n".join(lines) + "\n"))
    summary = run_project(project, RunOptions(simulate=True, delay_scale=0.01))
    assert summary.status == "succeeded"
    assert len(summary.objects) == 150
    log = events_of(project, summary.run_id)
    check_ordering(project, log)
    readies = Counter(e.object_id for _, e in log if isinstance(e, ev.ObjectReady))
    assert set(readies.values()) == {1}


def test_summary_json_shape(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    summary = run_project(project, RunOptions(fail=frozenset({2005})))
    data = summary.to_json()
    assert set(data) >= {"run_id", "status", "duration_s", "objects"}
    objects = data["objects"]
    assert isinstance(objects, dict)
    assert set(objects["2005"]) >= {"status", "attempts", "rows", "duration_s", "error"}
    assert objects["2005"]["status"] == "failed"


def test_editing_a_python_transform_reruns_it_and_its_descendants(tmp_path: Path) -> None:
    folder = tmp_path / "py"
    write_yaml(
        folder,
        """
objects:
  - {id: 1001, name: base, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 2001, name: shaped, parents: [1001], python: "steps:shape"}
  - {id: 3001, name: total, parents: [2001], sql: "select count(*) as n from shaped"}
""",
    )
    module = folder / "steps.py"
    module.write_text("def shape(base):\n    return base\n")
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    fresh = run_project(project, RunOptions())
    assert {s.status for s in fresh.objects.values()} == {"skipped"}
    module.write_text("def shape(base):\n    return base.slice(0, 2)\n")
    changed = run_project(project, RunOptions())
    assert changed.objects[1001].status == "skipped"
    assert changed.objects[2001].status == "loaded" and changed.objects[2001].rows == 2
    assert changed.objects[3001].status == "loaded"


def test_run_with_state_in_postgresql(tmp_path: Path, pg_db_url: str) -> None:
    project = load(seed_project(tmp_path))
    summary = run_project(project, RunOptions(fail=frozenset({2005})), state_url=pg_db_url)
    assert summary.status == "failed"
    from sluice.state.postgres import PostgresStateStore

    store = PostgresStateStore(pg_db_url)
    try:
        run = store.get_run(summary.run_id)
        states = store.object_states(summary.run_id)
    finally:
        store.close()
    assert run.status == "failed"
    assert states[2005].status == "failed" and states[2005].attempt == 3
    assert states[3001].status == "loaded"
    again = run_project(project, RunOptions(), state_url=pg_db_url)
    assert again.objects[1001].status == "skipped"  # fresh, from the PostgreSQL state
    assert again.objects[2005].status == "loaded"


def test_workers_of_a_stage_share_real_work(tmp_path: Path) -> None:
    from sluice.runtime.run import open_backends, start_workers, stop_workers

    lines = ["stages:", "  ingest: {ids: 1000-1999, concurrency: 1}", "objects:"]
    lines += [f"  - {{id: {1000 + i}}}" for i in range(6)]
    lines += ["  - {id: 3000, parents: [1000, 1001, 1002, 1003, 1004, 1005]}"]
    project = load(write_yaml(tmp_path / "share", "\n".join(lines) + "\n"))
    with open_backends(project) as backends:
        first = start_workers(project, backends)
        second = start_workers(project, backends, stages=["ingest"])
        try:
            summary = run_project(project, RunOptions(simulate=True, delay_scale=0.4), workers="external")
        finally:
            stop_workers(*first)
            stop_workers(*second)
    assert summary.status == "succeeded"
    starts = [e for _, e in events_of(project, summary.run_id) if isinstance(e, ev.ObjectStarted) and e.stage == "ingest"]
    by_worker = Counter(e.worker for e in starts)
    assert len(by_worker) == 2, by_worker
    assert min(by_worker.values()) >= 2


def output(project: Project, state: ObjectState) -> list[dict[str, Any]]:
    assert state.location is not None
    rows: list[dict[str, Any]] = LocalLake(project.resolve_lake_path()).read(state.location).read_all().to_pylist()
    return rows


def test_a_csv_rewritten_with_the_same_size_and_mtime_is_loaded_again(tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    write_yaml(
        folder,
        """
objects:
  - {id: 1001, name: users, source: {type: csv, path: data/users.csv}}
  - {id: 2001, name: total, parents: [1001], sql: "select sum(score) as total from users"}
""",
    )
    (folder / "data").mkdir()
    csv = folder / "data" / "users.csv"
    csv.write_text("id,score\n1,10\n2,20\n", encoding="utf-8")
    project = load(folder)
    first = run_project(project, RunOptions())
    assert output(project, first.objects[2001]) == [{"total": 30}]
    unchanged = run_project(project, RunOptions())
    assert {s.status for s in unchanged.objects.values()} == {"skipped"}
    rewrite_keeping_size_and_mtime(csv, "2,20", "2,90")
    changed = run_project(project, RunOptions())
    assert changed.objects[1001].status == "loaded"
    assert output(project, changed.objects[1001]) == [{"id": 1, "score": 10}, {"id": 2, "score": 90}]
    assert changed.objects[2001].status == "loaded"
    assert output(project, changed.objects[2001]) == [{"total": 100}]
    again = run_project(project, RunOptions())
    assert {s.status for s in again.objects.values()} == {"skipped"}


def test_editing_a_module_a_python_transform_imports_reruns_it(tmp_path: Path) -> None:
    folder = tmp_path / "pyimports"
    write_yaml(
        folder,
        """
objects:
  - {id: 1001, name: base, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 2001, name: shaped, parents: [1001], python: "run_pkg.steps:shape"}
""",
    )
    (folder / "run_pkg").mkdir()
    init = folder / "run_pkg" / "__init__.py"
    init.write_text("ROWS = 1\n", encoding="utf-8")
    (folder / "run_pkg" / "steps.py").write_text(
        "from . import ROWS\n\ndef shape(base):\n    from run_helpers import extra\n    return base.slice(0, ROWS + extra())\n",
        encoding="utf-8",
    )
    helper = folder / "run_helpers.py"
    helper.write_text("def extra():\n    return 0\n", encoding="utf-8")
    unrelated = folder / "run_unrelated.py"
    unrelated.write_text("X = 1\n", encoding="utf-8")
    project = load(folder)
    assert run_project(project, RunOptions()).objects[2001].rows == 1

    unrelated.write_text("X = 22\n", encoding="utf-8")
    fresh = run_project(project, RunOptions())
    assert {s.status for s in fresh.objects.values()} == {"skipped"}

    rewrite_keeping_size_and_mtime(helper, "return 0", "return 2")
    helper_edit = run_project(project, RunOptions())
    assert helper_edit.objects[1001].status == "skipped"
    assert helper_edit.objects[2001].status == "loaded" and helper_edit.objects[2001].rows == 3
    assert len(output(project, helper_edit.objects[2001])) == 3

    rewrite_keeping_size_and_mtime(init, "ROWS = 1", "ROWS = 3")
    init_edit = run_project(project, RunOptions())
    assert init_edit.objects[2001].status == "loaded" and init_edit.objects[2001].rows == 5
    assert {s.status for s in run_project(project, RunOptions()).objects.values()} == {"skipped"}


def test_a_sql_source_is_never_fresh(tmp_path: Path) -> None:
    folder = tmp_path / "sqlsource"
    write_yaml(
        folder,
        """
connections:
  local: sqlite:///shop.db
objects:
  - {id: 1001, name: orders, source: {type: sql, connection: local, table: orders}}
""",
    )
    with sqlite3.connect(folder / "shop.db") as db:
        db.execute("create table orders (id integer)")
        db.execute("insert into orders values (1)")
    db.close()
    project = load(folder)
    assert run_project(project, RunOptions()).objects[1001].status == "loaded"
    second = run_project(project, RunOptions())
    assert second.objects[1001].status == "loaded", "a database cannot say whether it changed: read it again"
    assert output(project, second.objects[1001]) == [{"id": 1}]


def test_a_column_turning_fractional_fails_the_object_until_widen_is_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "evolve"
    definition = """
connections:
  dw: duckdb:///dw.duckdb
objects:
  - id: 1001
    name: amounts
    source: {{type: csv, path: data/amounts.csv}}
    destination: {{connection: dw, table: amounts, mode: merge, key: [id]{extra}}}
"""
    write_yaml(folder, definition.format(extra=""))
    (folder / "data").mkdir()
    csv = folder / "data" / "amounts.csv"
    csv.write_text("id,amount\n1,10\n2,30\n", encoding="utf-8")
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    csv.write_text("id,amount\n1,10.75\n2,30.5\n", encoding="utf-8")
    refused = run_project(load(folder), RunOptions()).objects[1001]
    assert refused.status == "failed"
    assert refused.attempt == 1, "a lossy type change is terminal: retrying cannot help"
    assert "table 'amounts' column 'amount' is BIGINT but the data's is DOUBLE" in (refused.error or "")
    write_yaml(folder, definition.format(extra=", schema_evolution: widen"))
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    import duckdb

    with duckdb.connect(str(folder / "dw.duckdb")) as db:
        assert db.execute("SELECT id, amount FROM amounts ORDER BY id").fetchall() == [(1, 10.75), (2, 30.5)]


def test_run_activity_remembers_recent_runs_within_its_byte_limit(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    run_project(project, RunOptions(simulate=True, delay_scale=0.0))
    with open_backends(project) as backends:
        activity = RunActivity(backends.state, cache_bytes=10 * ACTIVITY_ENTRY_BYTES)
        for index in range(200):
            assert activity(f"gone-{index}") is True  # an unknown run counts as going (the store will say)
            assert activity.cached_bytes <= 10 * ACTIVITY_ENTRY_BYTES
        assert activity.cached_bytes == 10 * ACTIVITY_ENTRY_BYTES


def test_an_object_of_a_run_cancelled_a_moment_ago_is_not_started(tmp_path: Path) -> None:
    from sluice import events as ev
    from sluice.state.base import RunRecord

    project = load(seed_project(tmp_path))
    with open_backends(project) as backends:
        backends.state.create_run(RunRecord("r1", project.name, "running", time.time()), [])
        activity = RunActivity(backends.state, ttl_s=3600.0)
        assert activity("r1") is True  # cached as going
        backends.state.finish_run("r1", "cancelled", time.time())  # a backfill stopped: its runs cancelled
        ready = ev.ObjectReady(run_id="r1", object_id=1001, stage="ingest", attempt=1)
        assert activity.settled(ready) == "run r1 is over"  # read afresh before the work starts
        assert activity("r1") is False


def test_an_interrupted_run_is_not_going_until_resumed_and_an_older_attempt_is_superseded(tmp_path: Path) -> None:
    from sluice import events as ev
    from sluice.runtime.run_lease import run_lease
    from sluice.state.base import RunRecord

    project = load(seed_project(tmp_path))
    with open_backends(project) as backends:
        state = backends.state
        state.create_run(RunRecord("r1", project.name, "running", time.time()), [ObjectState(1001, "ingest", "ready", 2)])
        coordinator = run_lease(state, project.name, "r1")  # a run started by hand: its coordinator holds its lease
        coordinator.hold()
        try:
            activity = RunActivity(state, ttl_s=3600.0)
            first, second = (ev.ObjectReady(run_id="r1", object_id=1001, stage="ingest", attempt=a) for a in (1, 2))
            assert activity.settled(first) == "attempt 1 of object 1001 in run r1 was superseded by attempt 2"
            assert activity.settled(second) == ""
            assert state.set_run_status("r1", "interrupted", time.time(), expected="running")  # its coordinator died
            assert activity.settled(second) == "run r1 is interrupted (its coordinator is gone)"
            assert activity("r1") is False
            assert state.set_run_status("r1", "running", None, expected="interrupted")  # sluice run --resume --run r1
            assert activity("r1") is True, "an interrupted run is asked again, not remembered as over"
            assert activity.settled(second) == ""
        finally:
            coordinator.release()


def test_a_lake_that_cannot_be_opened_closes_the_bus_and_the_state_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sluice.runtime.run
    from sluice.bus.embedded import EmbeddedBus
    from sluice.errors import ConfigError
    from sluice.state.sqlite import SqliteStateStore

    project = load(seed_project(tmp_path))
    closed: list[str] = []
    for kind in (EmbeddedBus, SqliteStateStore):
        close = kind.close
        monkeypatch.setattr(kind, "close", lambda self, close=close, name=kind.__name__: (closed.append(name), close(self))[1])

    def refuse(project: Project) -> LocalLake:
        raise ConfigError("lake (s3): the endpoint is not an http(s) URL")

    monkeypatch.setattr(sluice.runtime.run, "open_lake", refuse)
    with pytest.raises(ConfigError, match="endpoint"), open_backends(project):
        pass
    assert sorted(closed) == ["EmbeddedBus", "SqliteStateStore"]


def test_a_load_the_destination_refuses_leaves_the_lake_and_the_table_as_they_were(tmp_path: Path) -> None:
    folder = tmp_path / "refused"
    write_yaml(
        folder,
        """
connections:
  lite: sqlite:///lite.db
objects:
  - id: 1001
    name: amounts
    source: {type: csv, path: data/amounts.csv}
    destination: {connection: lite, table: amounts, mode: append}
""",
    )
    (folder / "data").mkdir()
    csv = folder / "data" / "amounts.csv"
    csv.write_text("id,n\n1,10\n2,30\n", encoding="utf-8")
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    csv.write_text("id,n\n3,5\n4,18446744073709551615\n", encoding="utf-8")  # SQLite cannot hold 2**64-1
    refused = run_project(load(folder), RunOptions()).objects[1001]
    assert refused.status == "failed" and "18446744073709551615" in (refused.error or "")
    project = load(folder)
    lake_rows = LocalLake(project.resolve_lake_path()).read("raw/amounts.parquet").read_all().to_pylist()
    assert lake_rows == [{"id": 1, "n": 10}, {"id": 2, "n": 30}]
    with sqlite3.connect(folder / "lite.db") as db:
        assert db.execute("SELECT id, n FROM amounts ORDER BY id").fetchall() == [(1, 10), (2, 30)]


def test_a_destination_table_dropped_by_hand_is_loaded_again(tmp_path: Path) -> None:
    import duckdb

    folder = tmp_path / "dropped"
    write_yaml(
        folder,
        """
connections:
  dw: duckdb:///dw.duckdb
  lite: sqlite:///lite.db
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5}, destination: {connection: lite, table: users}}
  - {id: 2001, name: clean, parents: [1001], sql: select * from users, destination: {connection: dw, table: clean}}
""",
    )
    assert run_project(load(folder), RunOptions()).counts() == {"loaded": 2}
    assert run_project(load(folder), RunOptions()).counts() == {"skipped": 2}  # both fresh
    with duckdb.connect(str(folder / "dw.duckdb")) as db:
        db.execute("DROP TABLE clean")
    (folder / "lite.db").unlink()
    again = run_project(load(folder), RunOptions())
    assert {oid: s.status for oid, s in again.objects.items()} == {1001: "loaded", 2001: "loaded"}
    with duckdb.connect(str(folder / "dw.duckdb")) as db:
        assert db.execute("SELECT count(*) FROM clean").fetchone() == (5,)
    assert run_project(load(folder), RunOptions()).counts() == {"skipped": 2}


def _amounts_project(folder: Path, pg_url: str, rows: str) -> None:
    """A CSV of ``id,n`` rows -> the local lake -> PostgreSQL (append): the table is loaded while the lake file is written."""
    write_yaml(
        folder,
        f"""
connections:
  dw: {pg_url}
objects:
  - id: 1001
    name: amounts
    source: {{type: csv, path: data/amounts.csv}}
    destination: {{connection: dw, table: amounts, mode: append}}
""",
    )
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "amounts.csv").write_text("id,n\n" + rows, encoding="utf-8")


def _pg_rows(pg_url: str) -> list[tuple[int, int]]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        return [(int(a), int(b)) for a, b in conn.execute("SELECT id, n FROM amounts ORDER BY id").fetchall()]


def test_a_copy_postgresql_refuses_mid_load_leaves_the_lake_as_it_was(tmp_path: Path, pg_db_url: str) -> None:
    import psycopg

    folder = tmp_path / "copy-refused"
    _amounts_project(folder, pg_db_url, "1,10\n2,30\n")
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE amounts ADD CONSTRAINT small_n CHECK (n < 100)")  # the COPY itself will fail
    _amounts_project(folder, pg_db_url, "".join(f"{i},{i % 50}\n" for i in range(3, 200_000)) + "200000,500\n")
    refused = run_project(load(folder), RunOptions()).objects[1001]
    assert refused.status == "failed" and "small_n" in (refused.error or "")
    lake_rows = LocalLake(load(folder).resolve_lake_path()).read("raw/amounts.parquet").read_all().to_pylist()
    assert lake_rows == [{"id": 1, "n": 10}, {"id": 2, "n": 30}]
    assert _pg_rows(pg_db_url) == [(1, 10), (2, 30)]


def test_a_lake_write_failing_while_postgresql_loads_leaves_the_table_as_it_was(
    tmp_path: Path, pg_db_url: str, monkeypatch: Any
) -> None:
    import sluice.lake.local

    folder = tmp_path / "lake-failed"
    _amounts_project(folder, pg_db_url, "1,10\n2,30\n")
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    _amounts_project(folder, pg_db_url, "".join(f"{i},{i % 50}\n" for i in range(3, 200_000)))

    def disk_failed(path: str) -> None:  # every row is written and loaded by now; only the flush fails
        raise OSError(5, "Input/output error", path)

    monkeypatch.setattr(sluice.lake.local, "_fsync", disk_failed)
    failed = run_project(load(folder), RunOptions()).objects[1001]
    assert failed.status == "failed" and "Input/output error" in (failed.error or "")
    monkeypatch.undo()
    assert _pg_rows(pg_db_url) == [(1, 10), (2, 30)]  # the COPY beside the lake write was rolled back
    lake_rows = LocalLake(load(folder).resolve_lake_path()).read("raw/amounts.parquet").read_all().to_pylist()
    assert lake_rows == [{"id": 1, "n": 10}, {"id": 2, "n": 30}]


def test_on_planned_is_called_once_the_run_is_recorded_and_before_anything_is_handed_out(tmp_path: Path) -> None:
    """``sluice run`` freezes the run's heap out of cyclic collections there (cli/tuning.py ``freeze_heap``): the run
    is planned and recorded, and nothing is on the bus yet."""
    project = load(seed_project(tmp_path))
    seen: list[tuple[list[str], int]] = []

    def planned() -> None:
        with open_backends(project) as backends:
            runs = [run.run_id for run in backends.state.find_runs(project.name, limit=5)]
            seen.append((runs, len(backends.bus.read(ev.EVENTS_TOPIC, 0, 10_000))))

    summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0), on_planned=planned)
    assert summary.status == "succeeded"
    assert seen == [([summary.run_id], 0)]
    assert isinstance(events_of(project, summary.run_id)[0][1], ev.RunStarted)


def test_a_resumed_run_keeps_the_options_it_was_started_with(tmp_path: Path) -> None:
    from sluice.runtime.coordinator import Coordinator

    project = load(seed_project(tmp_path))
    assert run_project(project, RunOptions()).status == "succeeded"
    with open_backends(project) as backends:  # a forced run whose process died before any object ran
        options = RunOptions(force=True, simulate=True, delay_scale=0.0, fail=frozenset({2005}))
        dead = Coordinator(project, backends.bus, backends.state, backends.lake, options)
        dead.start()
        dead.release_lease()  # a dead process renews no lease
    resumed: list[Coordinator] = []
    summary = run_project(project, RunOptions(resume=""), on_start=resumed.append)  # `sluice run --resume`, no flags
    assert resumed[0].options.force and resumed[0].options.simulate
    assert summary.objects[2005].status == "failed" and "forced failure" in (summary.objects[2005].error or "")
    assert {s.status for oid, s in summary.objects.items() if oid not in {2005, 3004, 3006}} == {"loaded"}


def test_a_resumed_run_says_an_object_a_worker_had_started_runs_again_as_the_same_attempt(tmp_path: Path) -> None:
    from sluice.runtime.coordinator import Coordinator

    project = load(seed_project(tmp_path))
    with open_backends(project) as backends:  # a run whose process died once a worker had started its first object
        coordinator = Coordinator(
            project, backends.bus, backends.state, backends.lake, RunOptions(simulate=True, delay_scale=0.0)
        )
        run_id = coordinator.start()
        first = min(oid for oid, s in coordinator.states.items() if s.status == "ready")
        logged_events = lambda: [ev.decode(m.value) for m in backends.bus.read(ev.EVENTS_TOPIC)]  # noqa: E731
        wait_for(lambda: any(isinstance(e, ev.RunStarted) for e in logged_events()), 30, "RunStarted on the log")
        started = ev.ObjectStarted(run_id=run_id, object_id=first, stage=project.objects[first].stage, worker="gone")
        backends.bus.publish(ev.EVENTS_TOPIC, [(run_id, ev.encode(started))])
        coordinator.release_lease()  # a dead process renews no lease
    with logged("sluice.coordinator", logging.WARNING) as records:
        summary = run_project(project, RunOptions(resume=""))
    assert summary.run_id == run_id and summary.status == "succeeded"
    said = [r.getMessage() for r in records if "had been started by a worker" in r.getMessage()]
    assert said == [
        f"run {run_id}: object(s) {first} had been started by a worker: one still going finishes them, else they run "
        "again (same attempt) once the bus gives their message to another worker: at once if that worker was a process "
        f"of this host (embedded bus), else when its lease ends (at most {project.lease_s:.0f} s, lease_s; Kafka: its "
        "session, 10 s)"
    ]
    started = [e for _, e in events_of(project, run_id) if isinstance(e, ev.ObjectStarted) and e.object_id == first]
    assert [(e.attempt, e.worker == "gone") for e in started] == [(1, True), (1, False)], "run again as the same attempt"
