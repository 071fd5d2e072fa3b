"""Incremental REST objects across runs: the cursor is kept in the state store, advanced only once the
object's output is durable, and forgotten by ``sluice state reset``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest
from tests.connectors.rest_server import FakeApi

from helpers import events_of, load, write_yaml
from sluice import events as ev
from sluice.errors import TransientError
from sluice.lake.base import LakeWrite, Then
from sluice.lake.local import LocalLake
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.run import RunOptions, run_project
from sluice.state.sqlite import SqliteStateStore

PROJECT = """
name: shop
connections:
  lite: sqlite:///lite.db
objects:
  - id: 1001
    name: changes
    source:
      type: rest
      base_url: {url}
      path: /changes
      incremental: {{cursor: updated_at, param: updated_since}}
      retries: {{attempts: 2, backoff_s: 0.01}}
    destination: {{connection: lite, table: changes, mode: merge, key: [id]}}
"""


def record(i: int) -> dict[str, object]:
    return {"id": i, "name": f"n{i}", "updated_at": f"2024-01-{i:02d}T00:00:00Z"}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi([record(i) for i in range(1, 6)])
    yield server
    server.close()


def rows(folder: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(folder / "lite.db") as db:
        return db.execute("SELECT id, name FROM changes ORDER BY id").fetchall()


def cursors(folder: Path) -> dict[int, object]:
    store = SqliteStateStore(folder / ".sluice" / "state.db")
    try:
        return saved_values(store)
    finally:
        store.close()


def saved_values(store: SqliteStateStore) -> dict[int, object]:
    return {object_id: json.loads(text)["value"] for object_id, text in store.source_cursors("shop").items()}


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=120, check=False)


def test_second_run_asks_from_the_saved_cursor_and_reset_starts_over(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=api.url))
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    assert api.requests_to("/changes") == [{}]
    assert len(rows(folder)) == 5
    assert cursors(folder) == {1001: "2024-01-05T00:00:00Z"}

    nothing_new = run_project(project, RunOptions())
    assert nothing_new.status == "succeeded" and nothing_new.objects[1001].rows == 0
    assert cursors(folder) == {1001: "2024-01-05T00:00:00Z"}

    api.records += [record(6), record(7)]
    api.records[0]["name"] = "changed but not newer"
    second = run_project(project, RunOptions())
    assert second.status == "succeeded" and second.objects[1001].rows == 2
    assert api.requests_to("/changes")[-1] == {"updated_since": "2024-01-05T00:00:00Z"}
    assert rows(folder)[0] == (1, "n1") and len(rows(folder)) == 7
    assert cursors(folder) == {1001: "2024-01-07T00:00:00Z"}

    shown = sluice("state", "show", str(folder))
    assert shown.returncode == 0 and '1001  changes  "2024-01-07T00:00:00Z"' in shown.stdout
    assert sluice("state", "reset", str(folder), "--object", "9999").returncode == 2
    reset = sluice("state", "reset", str(folder), "--object", "1001")
    assert reset.returncode == 0, reset.stderr
    assert "reset the cursor of object(s) 1001" in reset.stdout
    assert cursors(folder) == {}
    third = run_project(project, RunOptions())
    assert third.status == "succeeded" and third.objects[1001].rows == 7
    assert api.requests_to("/changes")[-1] == {}
    assert rows(folder)[0] == (1, "changed but not newer")
    assert json.loads(sluice("state", "show", str(folder), "--json").stdout) == {"1001": "2024-01-07T00:00:00Z"}
    every = sluice("state", "reset", str(folder), "--all")
    assert every.returncode == 0 and cursors(folder) == {}
    assert sluice("state", "reset", str(folder)).returncode == 2  # neither --object nor --all


def test_a_failed_run_does_not_advance_the_cursor(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=api.url))
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [record(6)]
    api.faults["/changes"] = [(500, {})] * 6  # every attempt of the object's three fails
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    assert cursors(folder) == {1001: "2024-01-05T00:00:00Z"}
    assert run_project(project, RunOptions()).objects[1001].rows == 1


class LakeThatFailsAfterReading(LocalLake):
    """Reads everything, then fails as a full disk would: the output never becomes durable."""

    def write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        then: Then | None = None,
        partition_by: Sequence[str] = (),
    ) -> LakeWrite:
        data.read_all()
        raise TransientError("disk full")


def test_the_cursor_is_saved_only_after_the_output_is_durable(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=api.url))
    project = load(folder)
    store = SqliteStateStore(tmp_path / "state.db")
    try:
        failing = ObjectExecutor(project, LakeThatFailsAfterReading(folder / "lake"), store)
        with pytest.raises(TransientError, match="disk full"):
            failing.run(project.objects[1001], "r1", {})
        assert saved_values(store) == {}
        ObjectExecutor(project, LocalLake(folder / "lake"), store).run(project.objects[1001], "r2", {})
        assert saved_values(store) == {1001: "2024-01-05T00:00:00Z"}
    finally:
        store.close()


def test_initial_value_is_sent_on_the_first_run(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(
        folder,
        PROJECT.format(url=api.url).replace("param: updated_since}", "param: updated_since, initial: '2024-01-03'}"),
    )
    summary = run_project(load(folder), RunOptions())
    assert summary.objects[1001].rows == 3
    assert api.requests_to("/changes") == [{"updated_since": "2024-01-03"}]


def test_validate_names_an_unknown_connection_of_a_rest_source(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url="http://127.0.0.1:9").replace("base_url: http://127.0.0.1:9", "connection: shop_apii"))
    checked = sluice("validate", str(folder))
    assert checked.returncode == 2
    assert "unknown connection 'shop_apii' in source" in checked.stderr


def test_a_timestamp_cursor_is_saved_as_iso_text(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(
        folder,
        PROJECT.format(url=api.url).replace("      retries:", "      column_types: {updated_at: 'timestamp[s]'}\n      retries:"),
    )
    api.records = [{"id": i, "updated_at": f"2024-02-0{i} 10:00:00"} for i in (1, 2)]
    assert run_project(load(folder), RunOptions()).status == "succeeded"
    assert cursors(folder) == {1001: "2024-02-02T10:00:00"}


LAKE_ONLY = """
name: shop
objects:
  - id: 1001
    name: changes
    source:
      type: rest
      base_url: {url}
      path: /changes
      incremental: {{cursor: updated_at, param: updated_since{key}}}
      retries: {{attempts: 2, backoff_s: 0.01}}
  - id: 2001
    name: counted
    parents: [1001]
    sql: select id, name from changes
"""


def lake_rows(folder: Path, layer: str, name: str) -> list[tuple[object, ...]]:
    lake = LocalLake(folder / ".sluice" / "lake")
    location = lake.current_location(layer, name)
    assert location is not None
    table = lake.read(location).read_all().sort_by("id")
    return list(zip(table.column("id").to_pylist(), table.column("name").to_pylist(), strict=True))


def test_the_lake_output_accumulates_the_delta_merged_on_the_declared_key(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=", primary_key: [id]"))
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    assert [i for i, _ in lake_rows(folder, "raw", "changes")] == [1, 2, 3, 4, 5]

    api.records += [record(6), record(7)]
    api.records[1].update(name="changed", updated_at="2024-01-08T00:00:00Z")  # id 2 changed after the cursor
    second = run_project(project, RunOptions())
    assert second.status == "succeeded" and second.objects[1001].rows == 3  # this run read the delta only
    assert api.requests_to("/changes")[-1] == {"updated_since": "2024-01-05T00:00:00Z"}
    expected = [(1, "n1"), (2, "changed"), (3, "n3"), (4, "n4"), (5, "n5"), (6, "n6"), (7, "n7")]
    assert lake_rows(folder, "raw", "changes") == expected
    assert lake_rows(folder, "cleaned", "counted") == expected  # what downstream objects read

    nothing_new = run_project(project, RunOptions())
    assert nothing_new.status == "succeeded" and nothing_new.objects[1001].rows == 0
    assert lake_rows(folder, "raw", "changes") == expected


def test_without_a_key_the_delta_is_appended_and_a_reset_replaces_everything(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=""))
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [record(6)]
    api.records[1].update(name="changed", updated_at="2024-01-08T00:00:00Z")
    assert run_project(project, RunOptions()).status == "succeeded"
    kept = lake_rows(folder, "raw", "changes")
    assert kept == [(1, "n1"), (2, "n2"), (2, "changed"), (3, "n3"), (4, "n4"), (5, "n5"), (6, "n6")]
    assert sluice("state", "reset", str(folder), "--object", "1001").returncode == 0
    assert run_project(project, RunOptions()).status == "succeeded"  # everything read again: it replaces the output
    assert lake_rows(folder, "raw", "changes") == [(1, "n1"), (2, "changed"), (3, "n3"), (4, "n4"), (5, "n5"), (6, "n6")]


def test_a_merge_destination_key_merges_the_lake_and_the_table_loads_only_the_delta(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=api.url))  # destination: merge on key [id], no key of the source's own
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [record(6)]
    api.records[0].update(name="changed", updated_at="2024-01-09T00:00:00Z")
    second = run_project(project, RunOptions())
    assert second.status == "succeeded" and second.objects[1001].rows == 2
    expected = [(1, "changed"), (2, "n2"), (3, "n3"), (4, "n4"), (5, "n5"), (6, "n6")]
    assert lake_rows(folder, "raw", "changes") == expected
    assert rows(folder) == expected


def test_checks_of_an_accumulated_output_say_they_covered_the_whole_output(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    checked = LAKE_ONLY.format(url=api.url, key=", primary_key: [id]").replace(
        "      retries: {attempts: 2, backoff_s: 0.01}\n",
        "      retries: {attempts: 2, backoff_s: 0.01}\n    checks:\n      - unique: {columns: [id]}\n",
    )
    write_yaml(folder, checked)
    project = load(folder)
    first = run_project(project, RunOptions())
    api.records += [record(6)]
    second = run_project(project, RunOptions())
    covered = [
        (e.covered, e.rows_checked)
        for run in (first, second)
        for _, e in events_of(project, run.run_id)
        if isinstance(e, ev.CheckFinished)
    ]
    assert covered == [("load", 5), ("table", 6)]  # the second run's output is the first's plus its one record


def failure(project: object, run_id: str) -> str:
    [error] = [e.error for _, e in events_of(project, run_id) if isinstance(e, ev.ObjectFailed)]  # type: ignore[arg-type]
    return error


def test_a_column_whose_type_changed_fails_the_run_and_rewrites_no_earlier_value(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=", primary_key: [id]"))
    project = load(folder)
    api.records = [{**record(i), "price": 10.5 * i} for i in (1, 2)]
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [{**record(3), "price": "7"}, {**record(4), "price": "n/a"}]
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    error = failure(project, failed.run_id)
    assert "column 'price' is double in the previous lake output but string in this run's records" in error, error
    assert f"sluice state reset {folder} --object 1001" in error and "\n" not in error
    lake = LocalLake(folder / ".sluice" / "lake")
    assert lake.read("raw/changes.parquet").read_all().column("price").to_pylist() == [10.5, 21.0]  # still numbers
    assert cursors(folder) == {1001: "2024-01-02T00:00:00Z"}  # the cursor did not move


def test_a_first_read_keeps_the_last_record_of_each_declared_key_as_later_reads_do(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=", primary_key: [id]"))
    api.records = [record(1), {**record(2), "name": "first"}, {**record(2), "name": "second", "updated_at": "2024-01-03"}]
    assert run_project(load(folder), RunOptions()).status == "succeeded"
    assert lake_rows(folder, "raw", "changes") == [(1, "n1"), (2, "second")]


def test_an_incremental_read_whose_previous_output_is_missing_fails_instead_of_dropping_history(
    tmp_path: Path, api: FakeApi
) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=", primary_key: [id]"))
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    LocalLake(folder / ".sluice" / "lake").remove("raw", "changes")
    api.records += [record(6)]
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    error = failure(project, failed.run_id)
    assert "the previous lake output raw/changes is missing" in error, error
    assert error.endswith(f"run 'sluice state reset {folder} --object 1001' to read everything again")
    assert cursors(folder) == {1001: "2024-01-05T00:00:00Z"}
    assert sluice("state", "reset", str(folder), "--object", "1001").returncode == 0  # the remedy named works
    assert run_project(project, RunOptions()).status == "succeeded"
    assert [i for i, _ in lake_rows(folder, "raw", "changes")] == [1, 2, 3, 4, 5, 6]


CHECKED = """
    checks:
      - expression: name <> 'bad'
"""


def test_a_refused_lake_only_output_leaves_the_cursor_where_it_was(tmp_path: Path, api: FakeApi) -> None:
    """The candidate was the only output: its records are read again by the next run, not skipped for good."""
    folder = tmp_path / "shop"
    write_yaml(
        folder,
        LAKE_ONLY.format(url=api.url, key=", primary_key: [id]").replace("\n  - id: 2001", CHECKED.rstrip() + "\n  - id: 2001"),
    )
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [{**record(6), "name": "bad"}]
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    assert failure(project, failed.run_id).endswith("the source's cursor did not move: the next run reads these records again")
    assert cursors(folder) == {1001: "2024-01-05T00:00:00Z"}
    api.records[-1]["name"] = "good"
    assert run_project(project, RunOptions()).status == "succeeded"
    assert lake_rows(folder, "raw", "changes")[-1] == (6, "good")
    assert cursors(folder) == {1001: "2024-01-06T00:00:00Z"}


def test_a_refused_output_whose_destination_was_loaded_says_the_cursor_moved_and_how_to_read_again(
    tmp_path: Path, api: FakeApi
) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=api.url) + CHECKED)
    project = load(folder)
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [{**record(6), "name": "bad"}]
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    error = failure(project, failed.run_id)
    moved = "the source's cursor moved past these records (its destination has them): run "
    assert error.endswith(f"{moved}'sluice state reset {folder} --object 1001' to read everything again"), error
    assert cursors(folder) == {1001: "2024-01-06T00:00:00Z"}


def test_a_misspelt_primary_key_says_to_correct_it_in_the_project_file(tmp_path: Path, api: FakeApi) -> None:
    folder = tmp_path / "shop"
    write_yaml(folder, LAKE_ONLY.format(url=api.url, key=", primary_key: [idd]"))
    project = load(folder)
    failed = run_project(project, RunOptions())
    error = failure(project, failed.run_id)
    assert "the key column 'idd' is not in this run's records" in error and "Did you mean 'id'?" in error, error
    lines = (folder / "sluice.yaml").read_text(encoding="utf-8").splitlines()
    line = lines.index("    source:") + 1  # the object's source, which declares the key
    assert error.endswith(f"Correct incremental.primary_key in {folder / 'sluice.yaml'}:{line}") and "state reset" not in error


@pytest.mark.parametrize("destination", [None, "postgres"])
def test_a_run_that_finds_nothing_after_a_delta_with_an_all_null_field_keeps_the_lake_output(
    tmp_path: Path, api: FakeApi, destination: str | None, request: pytest.FixtureRequest
) -> None:
    """The run that finds nothing new reads as the last delta's schema, whose ``addr.zip`` was all null (``null``):
    the previous output's string type wins and the output stays as it was (a merge destination loads nothing)."""
    folder = tmp_path / "shop"
    text = LAKE_ONLY.format(url=api.url, key=", primary_key: [id]")
    if destination == "postgres":
        url = request.getfixturevalue("pg_db_url")
        text = text.replace("objects:\n", f'connections: {{pg: "{url}"}}\nobjects:\n', 1).replace(
            "      retries: {attempts: 2, backoff_s: 0.01}\n",
            "      retries: {attempts: 2, backoff_s: 0.01}\n"
            "    destination: {connection: pg, table: changes, mode: merge, key: [id]}\n",
            1,
        )
    write_yaml(folder, text)
    project = load(folder)
    api.records = [{**record(i), "addr": {"zip": f"{i:05d}", "city": "c"}} for i in range(1, 4)]
    assert run_project(project, RunOptions()).status == "succeeded"
    api.records += [{**record(i), "addr": {"zip": None, "city": "d"}} for i in (4, 5)]
    second = run_project(project, RunOptions())
    assert second.status == "succeeded" and second.objects[1001].rows == 2
    nothing_new = run_project(project, RunOptions())
    assert nothing_new.status == "succeeded", failure(project, nothing_new.run_id)
    assert nothing_new.objects[1001].rows == 0
    lake = LocalLake(folder / ".sluice" / "lake")
    location = lake.current_location("raw", "changes")
    assert location is not None
    table = lake.read(location).read_all().sort_by("id")
    assert table.schema.field("addr").type.field("zip").type == pa.string()
    assert [a["zip"] for a in table.column("addr").to_pylist()] == ["00001", "00002", "00003", None, None]
    if destination == "postgres":
        import psycopg

        with psycopg.connect(url) as db:
            assert db.execute("SELECT id FROM changes ORDER BY id").fetchall() == [(i,) for i in range(1, 6)]
