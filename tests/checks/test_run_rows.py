"""``rows: load | table``: a check looks at the rows of the load being checked or at the whole output (by default
``table`` for ``freshness`` and ``row_count``, ``load`` for the others);
inside a PostgreSQL load (an append's or a merge's staged rows, before the commit) and over the lake. Each result
says what it covered and how many rows it looked at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.connectors.rest_server import FakeApi

from helpers import events_of, load, write_yaml
from sluice import events as ev
from sluice.checks.run import CheckRunner
from sluice.checks.store import load_results
from sluice.lake.registry import open_lake
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, open_backends, run_project


def finished(project: Project, run_id: str) -> dict[str, ev.CheckFinished]:
    return {e.check: e for _, e in events_of(project, run_id) if isinstance(e, ev.CheckFinished)}


def orders_project(folder: Path, pg_url: str, mode: str, checks: str) -> Project:
    write_yaml(
        folder,
        f"""connections:
  warehouse: {pg_url}
objects:
  - id: 1001
    name: orders
    source: {{type: csv, path: orders.csv}}
    destination: {{connection: warehouse, table: shop.orders, mode: {mode}{", key: [order_id]" if mode == "merge" else ""}}}
    checks:
{checks}""",
    )
    return load(folder)


def table_rows(pg_url: str) -> list[tuple[int, int]]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        return [(int(a), int(b)) for a, b in conn.execute("SELECT order_id, amount FROM shop.orders ORDER BY 1, 2")]


@pytest.mark.postgres
@pytest.mark.parametrize("severity", ["error", "warn"])
def test_an_append_checks_its_own_rows_by_default_and_the_whole_table_with_rows_table(
    tmp_path: Path, pg_db_url: str, severity: str
) -> None:
    import psycopg

    with psycopg.connect(pg_db_url) as conn:  # rows loaded earlier, one of them bad
        conn.execute("CREATE SCHEMA shop; CREATE TABLE shop.orders (order_id bigint, amount bigint)")
        conn.execute("INSERT INTO shop.orders VALUES (0, -5)")
    folder = tmp_path / "append"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,amount\n1,10\n2,20\n", encoding="utf-8")
    proj = orders_project(
        folder,
        pg_db_url,
        "append",
        f"""      - expression: amount >= 0
        name: load_amounts
        severity: {severity}
      - row_count: {{max: 2}}
        rows: load
        severity: {severity}
      - expression: amount >= 0
        name: table_amounts
        rows: table
        severity: warn
""",
    )
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded", summary.objects[1001].error
    results = finished(proj, summary.run_id)
    load_amounts, row_count, whole = results["load_amounts"], results["row_count"], results["table_amounts"]
    assert (load_amounts.status, load_amounts.covered, load_amounts.rows_checked) == ("passed", "load", 2)
    assert (row_count.status, row_count.covered, row_count.rows_checked) == ("passed", "load", 2)
    assert (whole.status, whole.failing_rows, whole.covered, whole.rows_checked) == ("failed", 1, "table", 3)
    assert whole.sample == ["order_id=0, amount=-5"]  # the table's own columns, not the staging table's
    with open_backends(proj) as backends:
        kept = {r.check: (r.covered, r.rows_checked) for r in load_results(proj, backends.state, run_id=summary.run_id)}
    assert kept == {"load_amounts": ("load", 2), "row_count": ("load", 2), "table_amounts": ("table", 3)}
    assert table_rows(pg_db_url) == [(0, -5), (1, 10), (2, 20)]


@pytest.mark.postgres
def test_a_merge_checks_its_staged_rows_before_dedupe_and_a_failing_check_leaves_the_table_as_it_was(
    tmp_path: Path, pg_db_url: str
) -> None:
    folder = tmp_path / "merge"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,amount\n1,10\n2,20\n", encoding="utf-8")
    checks = "      - unique: {columns: [order_id]}\n      - not_null: {columns: [amount]}\n        rows: table\n"
    proj = orders_project(folder, pg_db_url, "merge", checks)
    first = run_project(proj, RunOptions())
    assert first.status == "succeeded"
    assert {n: (e.covered, e.rows_checked) for n, e in finished(proj, first.run_id).items()} == {
        "unique_order_id": ("load", 2),
        "not_null_amount": ("table", 2),
    }
    (folder / "orders.csv").write_text("order_id,amount\n2,25\n3,30\n3,31\n", encoding="utf-8")
    second = run_project(proj, RunOptions())
    orders = second.objects[1001]
    assert orders.status == "failed" and "nothing was written" in (orders.error or "")
    unique = finished(proj, second.run_id)["unique_order_id"]  # merge would keep one row of key 3: the load had two
    assert (unique.status, unique.failing_rows, unique.covered, unique.rows_checked) == ("failed", 1, "load", 3)
    assert unique.sample == ["order_id=3, occurrences=2"]
    assert table_rows(pg_db_url) == [(1, 10), (2, 20)]  # the table as it was: the merge rolled back


def test_a_lake_output_written_by_the_run_is_its_load_and_sluice_check_covers_the_current_output(tmp_path: Path) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    (folder / "users.csv").write_text("user_id,email\n1,a@x\n2,\n3,c@x\n", encoding="utf-8")
    write_yaml(
        folder,
        """objects:
  - id: 1001
    name: users
    source: {type: csv, path: users.csv}
    checks:
      - not_null: {columns: [email]}
        severity: warn
      - unique: {columns: [user_id]}
        rows: table
""",
    )
    proj = load(folder)
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded"
    results = finished(proj, summary.run_id)
    assert (results["not_null_email"].failing_rows, results["not_null_email"].covered) == (1, "load")
    assert (results["unique_user_id"].covered, results["unique_user_id"].rows_checked) == ("table", 3)
    assert results["not_null_email"].rows_checked == 3
    checked = CheckRunner(proj, open_lake(proj)).run(proj.objects[1001], "", store=False)  # no load: sluice check
    assert {r.check: (r.covered, r.rows_checked) for r in checked.results} == {
        "not_null_email": ("table", 3),
        "unique_user_id": ("table", 3),
    }


@pytest.mark.postgres
def test_freshness_and_row_count_look_at_the_whole_table_unless_they_say_rows_load(tmp_path: Path, pg_db_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_db_url) as conn:  # the table holds fresh rows; this append brings none
        conn.execute("CREATE SCHEMA shop; CREATE TABLE shop.orders (order_id bigint, amount bigint, ts timestamptz)")
        conn.execute("INSERT INTO shop.orders VALUES (0, 5, now()), (1, 6, now())")
    folder = tmp_path / "empty_append"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,amount\n1,10\n", encoding="utf-8")
    write_yaml(
        folder,
        f"""connections:
  warehouse: {pg_db_url}
objects:
  - {{id: 1001, name: orders, source: {{type: csv, path: orders.csv}}}}
  - id: 2001
    name: big_orders
    parents: [1001]
    sql: select order_id, amount, now() as ts from orders where amount > 100
    destination: {{connection: warehouse, table: shop.orders, mode: append}}
    checks:
      - freshness: {{column: ts, max_age: 1h}}
      - row_count: {{min: 1, max: 2}}
      - expression: amount >= 0
      - row_count: {{min: 1}}
        name: load_count
        rows: load
        severity: warn
""",
    )
    proj = load(folder)
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded", summary.objects[2001].error
    results = finished(proj, summary.run_id)
    assert (results["freshness_ts"].status, results["freshness_ts"].covered) == ("passed", "table")
    assert (results["row_count"].status, results["row_count"].covered, results["row_count"].rows_checked) == (
        "passed",
        "table",
        2,
    )
    assert results["expression_amount_0"].covered == "load"
    assert (results["load_count"].status, results["load_count"].covered) == ("failed", "load")  # explicit rows: load
    assert len(table_rows(pg_db_url)) == 2


INCREMENTAL = """
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
    destination: {{connection: lite, table: changes, mode: merge, key: [id]}}
"""


def change(i: int) -> dict[str, object]:
    return {"id": i, "name": f"n{i}", "updated_at": f"2024-01-{i:02d}T00:00:00Z"}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi([change(i) for i in range(1, 6)])
    yield server
    server.close()


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["append", "merge"])
def test_checks_of_an_incremental_source_s_postgres_load_look_at_the_delta_loaded(
    tmp_path: Path, api: FakeApi, pg_db_url: str, mode: str
) -> None:
    folder = tmp_path / "shop"
    key = ", key: [id]" if mode == "merge" else ""
    checked = (
        INCREMENTAL.format(url=api.url)
        .replace("  lite: sqlite:///lite.db", f"  warehouse: {pg_db_url}")
        .replace(
            "{connection: lite, table: changes, mode: merge, key: [id]}",
            f"{{connection: warehouse, table: changes, mode: {mode}{key}}}",
        )
    )
    checked += "    checks:\n      - unique: {columns: [id]}\n      - row_count: {min: 1}\n"
    write_yaml(folder, checked)
    project = load(folder)
    first = run_project(project, RunOptions())
    api.records += [change(6)]
    second = run_project(project, RunOptions())
    assert (first.status, second.status) == ("succeeded", "succeeded"), second.objects[1001].error
    covered = [
        (e.check, e.covered, e.rows_checked)
        for run in (first, second)
        for _, e in events_of(project, run.run_id)
        if isinstance(e, ev.CheckFinished)
    ]
    assert covered == [  # the first load created the table; the second brought one record, not the lake's six
        ("unique_id", "load", 5),
        ("row_count", "table", 5),
        ("unique_id", "load", 1),
        ("row_count", "table", 6),
    ]
