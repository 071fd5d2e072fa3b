"""ObjectExecutor: a Parquet source stored unchanged keeps its own file as the lake output (Lake.write_file)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import load, write_yaml
from sluice.lake.local import LocalLake
from sluice.project.model import layer_of
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.run import RunOptions, run_project

TABLE = pa.table(
    {
        "id": pa.array(range(1, 7), pa.int64()),
        "name": ["a", "b", None, "d", "e", "f"],
        "at": pa.array([1_700_000_000_000_000 + i for i in range(6)], pa.timestamp("us")),
    }
)


def _project(folder: Path, source: str, extra: str = "") -> Path:
    write_yaml(
        folder,
        f"""
connections:
  lite: sqlite:///lite.db
objects:
  - id: 1001
    name: events
    source: {source}
    destination: {{connection: lite, table: events, mode: replace}}{extra}
  - {{id: 2001, name: named, parents: [1001], sql: "select id, name from events where name is not null"}}
""",
    )
    (folder / "data").mkdir(exist_ok=True)
    pq.write_table(TABLE, folder / "data" / "events.parquet", compression="snappy", row_group_size=4)
    return folder


def _lake_file(folder: Path, location: str) -> bytes:
    return (load(folder).resolve_lake_path() / location).read_bytes()


def _children_rows(folder: Path) -> list[dict[str, object]]:
    project = load(folder)
    location = f"{layer_of(project, project.objects[2001])}/named.parquet"
    return LocalLake(project.resolve_lake_path()).read(location).read_all().to_pylist()


def test_an_unchanged_parquet_source_keeps_its_file_and_readers_see_what_an_encoded_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.connectors.files import ParquetSource

    kept = _project(tmp_path / "kept", "{type: parquet, path: data/events.parquet, columns: [id, name, at]}")
    encoded = _project(tmp_path / "encoded", "{type: parquet, path: data/events.parquet}")
    assert run_project(load(kept), RunOptions()).counts() == {"loaded": 2}
    with monkeypatch.context() as patch:
        patch.setattr(ParquetSource, "whole_file", lambda self: None)  # as before Lake.write_file: encoded again
        assert run_project(load(encoded), RunOptions()).counts() == {"loaded": 2}
    source = (kept / "data" / "events.parquet").read_bytes()
    assert _lake_file(kept, "raw/events.parquet") == source  # the source's own file (every column, in order)
    assert _lake_file(encoded, "raw/events.parquet") != source
    lakes = [LocalLake(load(folder).resolve_lake_path()).read("raw/events.parquet").read_all() for folder in (kept, encoded)]
    assert lakes[0].schema == lakes[1].schema == TABLE.schema and lakes[0].equals(lakes[1])
    assert _children_rows(kept) == _children_rows(encoded) == [r for r in TABLE.select(["id", "name"]).to_pylist() if r["name"]]
    for folder in (kept, encoded):
        with sqlite3.connect(folder / "lite.db") as db:
            assert db.execute("SELECT count(*), sum(id) FROM events").fetchone() == (6, 21)
    assert run_project(load(kept), RunOptions()).counts() == {"skipped": 2}  # fresh: nothing changed


def test_a_parquet_source_reading_some_columns_is_encoded(tmp_path: Path) -> None:
    folder = _project(tmp_path / "some", "{type: parquet, path: data/events.parquet, columns: [name, id]}")
    assert run_project(load(folder), RunOptions()).counts() == {"loaded": 2}
    output = LocalLake(load(folder).resolve_lake_path()).read("raw/events.parquet").read_all()
    assert output.column_names == ["name", "id"] and output.column("id").to_pylist() == list(range(1, 7))


def test_a_partitioned_parquet_source_is_encoded(tmp_path: Path) -> None:
    folder = _project(tmp_path / "p", "{type: parquet, path: data/events.parquet}", "\n    partition_by: [name]")
    assert run_project(load(folder), RunOptions()).counts() == {"loaded": 2}
    output = LocalLake(load(folder).resolve_lake_path()).read("raw/events").read_all()
    assert sorted(output.column("id").to_pylist()) == list(range(1, 7))


def test_a_parquet_source_given_date_parts_is_encoded(tmp_path: Path) -> None:
    folder = _project(tmp_path / "d", "{type: parquet, path: data/events.parquet}")
    project = load(folder)
    obj = dataclasses.replace(project.objects[1001], date_parts=("year",), date_column="at", destination=None)
    lake = LocalLake(project.resolve_lake_path())
    outcome = ObjectExecutor(project, lake).run(obj, "run-1", {})
    output = lake.read(outcome.location or "").read_all()
    assert output.column("year").to_pylist() == [2023] * 6 and output.num_rows == 6
    assert _lake_file(folder, "raw/events.parquet") != (folder / "data" / "events.parquet").read_bytes()


def test_a_load_the_destination_refuses_leaves_the_kept_file_out_of_the_lake(tmp_path: Path) -> None:
    folder = _project(tmp_path / "refused", "{type: parquet, path: data/events.parquet}")
    assert run_project(load(folder), RunOptions()).objects[1001].status == "loaded"
    before = _lake_file(folder, "raw/events.parquet")
    huge = pa.table({"id": pa.array([1, 2**64 - 1], pa.uint64()), "name": ["x", "y"], "at": TABLE.column("at").slice(0, 2)})
    pq.write_table(huge, folder / "data" / "events.parquet")  # SQLite cannot hold 2**64-1
    refused = run_project(load(folder), RunOptions()).objects[1001]
    assert refused.status == "failed" and "18446744073709551615" in (refused.error or "")
    assert _lake_file(folder, "raw/events.parquet") == before
    assert sorted(p.name for p in (load(folder).resolve_lake_path() / "raw").iterdir()) == ["events.parquet"]
    with sqlite3.connect(folder / "lite.db") as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (6,)


CHECKED = """
objects:
  - id: 1001
    name: people
    source: {type: csv, path: people.csv}
    checks: [{not_null: {columns: [email]}}]
  - {id: 2001, name: adults, parents: [1001], sql: "select id, email from people where age >= 18"}
  - id: 2002
    name: adult_check
    parents: [1001]
    sql: "select id from people"
    checks: [{relationships: {column: id, to: people}, severity: warn}]
"""


def _rows(lake: LocalLake, location: str | None) -> list[int]:
    assert location is not None
    return sorted(lake.read(location).read_all().column("id").to_pylist())


def test_an_output_whose_error_check_failed_never_becomes_current_and_stays_readable(tmp_path: Path) -> None:
    """A plain run (no logical date): the object with an error check writes its candidate, made current once the checks
    passed; when one fails, the previous output stays current (children, models and other objects' checks read it), the
    failed one stays readable at the candidate the failure names, and a fixed run replaces it."""
    from helpers import events_of
    from sluice import events as ev

    write_yaml(tmp_path, CHECKED)
    people = tmp_path / "people.csv"
    people.write_text("id,email,age\n1,a@x,30\n2,b@x,12\n", encoding="utf-8")
    project = load(tmp_path)
    lake = LocalLake(project.resolve_lake_path())
    assert run_project(project, RunOptions()).counts() == {"loaded": 3}
    assert lake.current_location("raw", "people") == "raw/people.parquet"
    assert _rows(lake, "raw/people.parquet") == [1, 2]

    people.write_text("id,email,age\n1,a@x,30\n2,,40\n3,c@x,50\n", encoding="utf-8")  # a null email
    failed = run_project(project, RunOptions())
    assert failed.status == "failed" and failed.counts() == {"failed": 1, "skipped": 2}
    assert _rows(lake, "raw/people.parquet") == [1, 2]  # the previous output stays current
    assert _rows(lake, "raw/people.candidate.parquet") == [1, 2, 3]  # the failed one, for diagnosis
    [error] = [e.error for _, e in events_of(project, failed.run_id) if isinstance(e, ev.ObjectFailed)]
    assert error.endswith("the output checked stays at raw/people.candidate.parquet, not made current (the previous one stays)")

    people.write_text("id,email,age\n1,a@x,30\n3,c@x,50\n", encoding="utf-8")
    assert run_project(project, RunOptions()).counts() == {"loaded": 3}
    assert _rows(lake, "raw/people.parquet") == [1, 3]
    assert _rows(lake, "cleaned/adults.parquet") == [1, 3]


def test_a_first_run_whose_error_check_failed_does_not_speak_of_a_previous_output(tmp_path: Path) -> None:
    from helpers import events_of
    from sluice import events as ev

    write_yaml(tmp_path, CHECKED)
    (tmp_path / "people.csv").write_text("id,email,age\n1,a@x,30\n2,,40\n", encoding="utf-8")
    project = load(tmp_path)
    failed = run_project(project, RunOptions())
    assert failed.status == "failed"
    [error] = [e.error for _, e in events_of(project, failed.run_id) if isinstance(e, ev.ObjectFailed)]
    assert error.endswith("the output checked stays at raw/people.candidate.parquet, not made current"), error


def test_a_run_given_a_load_key_does_not_append_again_what_a_load_under_that_key_committed(tmp_path: Path) -> None:
    """RunOptions.load_key (a backfill date run again after its run was cancelled mid-object: docs/backfills.md) reaches
    the worker in ObjectReady, and the destination records the load under it: an append the first run committed is
    not added twice; a run with a key of its own appends again."""
    from datetime import datetime

    write_yaml(tmp_path, """
connections:
  lite: sqlite:///lite.db
objects:
  - id: 1001
    name: sales
    sql: "select 1 AS id, DATE '{{ ds }}' AS day union all select 2, DATE '{{ ds }}'"
    destination: {connection: lite, table: sales, mode: append}
""")  # fmt: skip
    project = load(tmp_path)
    day = datetime.fromisoformat("2026-01-02T00:00:00+00:00")

    def rows() -> int:
        with sqlite3.connect(tmp_path / "lite.db") as db:
            return int(db.execute("SELECT count(*) FROM sales").fetchone()[0])

    first = run_project(project, RunOptions(logical_date=day))
    assert first.status == "succeeded" and rows() == 2
    again = run_project(project, RunOptions(logical_date=day, force=True, load_key=first.run_id))
    assert again.counts() == {"loaded": 1} and rows() == 2
    assert run_project(project, RunOptions(logical_date=day, force=True)).counts() == {"loaded": 1} and rows() == 4
