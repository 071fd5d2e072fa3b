"""Parallel backfills of objects depending on the logical date: each date reads and writes its own data.

A real DuckDB engine, the local lake and a PostgreSQL destination: a CSV per day (``{{ ds }}`` in the source's path)
-> a SQL object adding the day (``{{ ds }}`` in its SQL, loaded with ``append``) -> a per-day total (loaded with
``merge``). Six dates with ``--parallel 3`` leave exactly what ``--parallel 1`` leaves, in the lake and in the
tables; a child of date D reads D's parent output even when another date's run wrote that parent later.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from helpers import write_yaml
from sluice.errors import ConfigError
from sluice.lake.dated import dated_name, held_logical_date
from sluice.lake.local import LocalLake
from sluice.project.load import load_project
from sluice.project.model import ObjectSpec, Project
from sluice.scheduling.backfills import Backfills, BackfillSpec, check_parallel, logical_dates
from sluice.scheduling.launch import InProcessRuns
from sluice.scheduling.templating import dated_objects, render_object, run_context
from sluice.state.registry import open_state

DAYS = [f"2026-01-0{d}" for d in range(1, 7)]


def _project(folder: Path, pg_url: str, totals_mode: str = "merge, key: [day]", model: str = "") -> Project:
    write_yaml(
        folder,
        f"""
name: bfp
connections:
  dw: {pg_url}
objects:
  - {{id: 1001, name: orders_raw, source: {{type: csv, path: "landing/{{{{ ds }}}}.csv"}}}}
  - id: 2001
    name: orders
    parents: [1001]
    sql: "SELECT id, amount, DATE '{{{{ ds }}}}' AS day FROM orders_raw"
    destination: {{connection: dw, table: orders, mode: append}}
  - id: 3001
    name: totals
    parents: [2001]
    sql: "SELECT day, count(*) AS n, sum(amount) AS amount FROM orders GROUP BY day"
    destination: {{connection: dw, table: totals, mode: {totals_mode}}}
  - id: 3002
    name: days_seen
    parents: [2001]
    sql: "SELECT DISTINCT day FROM orders"
    checks: [{{relationships: {{column: day, to: orders, field: day}}}}]
""",
    )
    (folder / "models").mkdir(exist_ok=True)  # a DuckDB SQL model reading the date's orders
    (folder / "models" / "day_stats.sql").write_text(
        model or "SELECT day, max(amount) AS top, min(id) AS first_id FROM {{ ref('orders') }} GROUP BY day\n", encoding="utf-8"
    )
    landing = folder / "landing"
    landing.mkdir(exist_ok=True)
    for i, day in enumerate(DAYS, start=1):  # a different number of rows and amounts each day
        rows = "".join(f"{10 * i + k},{i * k}\n" for k in range(1, i + 2))
        (landing / f"{day}.csv").write_text("id,amount\n" + rows, encoding="utf-8")
    return load_project(folder / "sluice.yaml")


def _named(project: Project, name: str) -> ObjectSpec:
    return next(obj for obj in project.objects.values() if obj.name == name)


def _backfill(project: Project, parallel: int) -> str:
    check_parallel(project, None, parallel)
    state = open_state(project.resolve_state_url(), project.root)
    try:
        backfills = Backfills(state, project.name)
        spec = BackfillSpec(date(2026, 1, 1), date(2026, 1, 6), parallel=parallel)
        record = backfills.create(spec, logical_dates(spec.start, spec.end))
        with InProcessRuns(project) as runs:
            return backfills.run(record.backfill_id, runs, parallel).status
    finally:
        state.close()


def _lake(project: Project) -> dict[str, list[dict[str, Any]]]:
    """Every lake output of the project (plain and per date), sorted rows."""
    lake = LocalLake(project.resolve_lake_path())
    found = {}
    plain = ("orders_raw", "orders", "totals", "day_stats", "days_seen")
    names = [*plain, *(dated_name(n, f"{d}T00:00:00+00:00") for n in plain for d in DAYS)]
    for layer in ("raw", "cleaned", "curated"):
        for name in names:
            location = lake.current_location(layer, name)
            if location is not None:
                rows = lake.read(location).read_all().to_pylist()
                found[f"{layer}/{name}"] = sorted(rows, key=lambda r: tuple(str(v) for v in r.values()))
    return found


def _tables(pg_url: str) -> dict[str, list[tuple[Any, ...]]]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        return {
            "orders": conn.execute("SELECT id, amount, day FROM orders ORDER BY id").fetchall(),
            "totals": conn.execute("SELECT day, n, amount FROM totals ORDER BY day").fetchall(),
        }


def _fresh_tables(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS orders, totals")


def test_six_dates_three_at_once_leave_what_one_at_a_time_leaves(tmp_path: Path, pg_db_url: str) -> None:
    one = _project(tmp_path / "one", pg_db_url)
    assert _backfill(one, 1) == "succeeded"
    lake_one, tables_one = _lake(one), _tables(pg_db_url)
    _fresh_tables(pg_db_url)
    three = _project(tmp_path / "three", pg_db_url)
    assert _backfill(three, 3) == "succeeded"
    lake_three, tables_three = _lake(three), _tables(pg_db_url)

    assert tables_three == tables_one
    assert len(tables_one["orders"]) == sum(i + 1 for i in range(1, 7))  # every day's rows once
    assert [(str(day), n) for day, n, _ in tables_one["totals"]] == [(d, i + 1) for i, d in enumerate(DAYS, start=1)]
    assert lake_three == lake_one
    # one output per date and object, and the plain output holds the last date's
    assert sum(1 for key in lake_one if ".ld-" in key) == 5 * len(DAYS)
    assert [(str(r["day"]), r["first_id"]) for r in lake_one["curated/day_stats.ld-20260104T000000Z"]] == [("2026-01-04", 41)]
    assert {str(r["day"]) for r in lake_one["cleaned/orders"]} == {"2026-01-06"}
    held = held_logical_date(LocalLake(three.resolve_lake_path()), "cleaned", "orders")
    assert held is not None and held.isoformat() == "2026-01-06T00:00:00+00:00"


def test_a_child_reads_its_own_dates_parent_when_a_later_date_wrote_it_since(tmp_path: Path, pg_db_url: str) -> None:
    """Deterministic interleaving: date 3's parent, then date 5's parent, then date 3's child."""
    from sluice.runtime.execute import ObjectExecutor

    project = _project(tmp_path / "p", pg_db_url)
    assert dated_objects(project) == {1001, 2001, 3001, 3002, _named(project, "day_stats").id}
    executor = ObjectExecutor(project, LocalLake(project.resolve_lake_path()))

    def run(oid: int, day: str, inputs: dict[str, str | None]) -> str | None:
        logical = f"{day}T00:00:00+00:00"
        obj = render_object(project.objects[oid], run_context(project, {"logical_date": logical}))
        outcome = executor.run(obj, f"run-{day}", inputs, logical_date=logical)
        executor.promote(obj, outcome)  # as the worker does once the object's checks passed
        return outcome.location

    raw3 = run(1001, "2026-01-03", {})
    raw5 = run(1001, "2026-01-05", {})
    assert raw3 != raw5
    orders3 = run(2001, "2026-01-03", {"orders_raw": raw3})
    rows = LocalLake(project.resolve_lake_path()).read(orders3 or "").read_all()
    assert sorted(rows.column("id").to_pylist()) == [31, 32, 33, 34]  # date 3's four rows, not date 5's six
    assert {str(d) for d in rows.column("day").to_pylist()} == {"2026-01-03"}
    # the plain output is the latest date's, whichever finished last
    lake = LocalLake(project.resolve_lake_path())
    assert sorted(lake.read("raw/orders_raw.parquet").read_all().column("id").to_pylist()) == [51, 52, 53, 54, 55, 56]
    assert sorted(lake.read("cleaned/orders.parquet").read_all().column("id").to_pylist()) == [31, 32, 33, 34]
    orders5 = run(2001, "2026-01-05", {"orders_raw": raw5})
    assert orders5 != orders3
    stats3 = run(_named(project, "day_stats").id, "2026-01-03", {"orders": orders3})  # a SQL model, after date 5's
    assert lake.read(stats3 or "").read_all().to_pylist() == [{"day": date(2026, 1, 3), "top": 12, "first_id": 31}]
    seen = project.objects[3002]  # its relationships check reads date 3's orders, not the plain (date 5's) output
    checked = executor.check(seen, "run-2026-01-03", run(3002, "2026-01-03", {"orders": orders3}), {"orders": orders3})
    assert [r.status for r in checked.results] == ["passed"] and not checked.failure
    run(2001, "2026-01-04", {"orders_raw": run(1001, "2026-01-04", {})})  # an earlier date finishing later
    assert sorted(lake.read("cleaned/orders.parquet").read_all().column("id").to_pylist()) == [51, 52, 53, 54, 55, 56]


def test_a_replaced_table_or_an_incremental_model_keeps_dates_in_order(tmp_path: Path, pg_db_url: str) -> None:
    project = _project(tmp_path / "r", pg_db_url, totals_mode="replace")
    with pytest.raises(ConfigError, match=r"--parallel 3: object 3001 \(totals\) depends on the logical date and writes "
                       r"table 'totals' with mode replace.*--parallel 1, or give it mode append or merge"):  # fmt: skip
        check_parallel(project, None, 3)
    check_parallel(project, None, 1)
    check_parallel(project, (1001,), 3)  # totals is not planned
    incremental = (
        "{{ config(materialized='incremental', unique_key='day') }}\nSELECT day, count(*) AS n FROM orders GROUP BY day\n"
    )
    project = _project(tmp_path / "i", pg_db_url, model=incremental)
    stats = _named(project, "day_stats")
    with pytest.raises(ConfigError, match=rf"--parallel 2: object {stats.id} \(day_stats\) depends on the logical date and is an "
                       r"incremental model.*--parallel 1, or make it materialized: table"):  # fmt: skip
        check_parallel(project, (stats.id,), 2)


def test_the_plain_output_is_replaced_by_a_run_without_a_date_and_then_by_any_date(tmp_path: Path) -> None:
    from sluice.lake.dated import promote

    lake = LocalLake(tmp_path)

    def write(name: str, value: int) -> Any:
        table = pa.table({"v": [value]})
        return lake.write("raw", name, pa.RecordBatchReader.from_batches(table.schema, table.to_batches()))

    assert promote(lake, "raw", "t", write("t.ld-2", 2), "2026-01-02T00:00:00+00:00")
    assert not promote(lake, "raw", "t", write("t.ld-1", 1), "2026-01-01T00:00:00+00:00")
    assert lake.read("raw/t.parquet").read_all().column("v").to_pylist() == [2]
    write("t", 9)  # a run without a logical date
    assert held_logical_date(lake, "raw", "t") is None
    assert promote(lake, "raw", "t", write("t.ld-1", 1), "2026-01-01T00:00:00+00:00")
    assert lake.read("raw/t.parquet").read_all().column("v").to_pylist() == [1]
