"""Checks inside a PostgreSQL load's transaction whose SQL fails: each is reported ``error`` with the real, one-line
cause and leaves the transaction usable; a ``warn`` one never blocks or loses the load, an ``error`` one rolls it
back; and a load is reported loaded only when its transaction committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.test_run_rows import finished
from checks.test_run_rows import orders_project as rows_project
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, run_project

pytestmark = pytest.mark.postgres

COLUMNS = "order_id, amount, label"


def orders_project(folder: Path, pg_url: str, checks: str, mode: str = "append") -> Project:
    """test_run_rows' project over a two-row orders.csv written here."""
    folder.mkdir(exist_ok=True)
    (folder / "orders.csv").write_text("order_id,amount,label\n1,10,a\n2,20,b\n", encoding="utf-8")
    return rows_project(folder, pg_url, mode, checks)


def table_count(pg_url: str) -> int | None:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        if conn.execute("SELECT to_regclass('shop.orders')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT count(*) FROM shop.orders").fetchone()
        return None if row is None else int(row[0])


BROKEN_WARN = """      - expression: nosuch > 0
        severity: warn
      - unique: {columns: [nosuch]}
        severity: warn
      - expression: label > 5
        severity: warn
        rows: table
      - row_count: {min: 1}
      - not_null: {columns: [order_id]}
"""


def missing(name: str) -> str:
    return (
        f"column '{name}' is not in the output of object 1001 (orders) (its columns: {COLUMNS}). "
        "Fix the check's column, or select it in the object's SQL"
    )


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_warn_checks_whose_sql_fails_say_why_and_neither_block_nor_lose_the_load(
    tmp_path: Path, pg_db_url: str, mode: str
) -> None:
    proj = orders_project(tmp_path / "warn", pg_db_url, BROKEN_WARN, mode)
    for run, expected in ((1, 2), (2, 4 if mode == "append" else 2)):  # a first load (the table created), then another
        summary = run_project(proj, RunOptions(force=True))
        assert summary.status == "succeeded", (run, summary.objects[1001].error)
        assert summary.objects[1001].status == "loaded"
        assert table_count(pg_db_url) == expected  # committed: what is reported loaded is there
        results = finished(proj, summary.run_id)
        assert {name: (r.status, r.message) for name, r in results.items()} == {
            "expression_nosuch_0": ("error", missing("nosuch")),
            "unique_nosuch": ("error", missing("nosuch")),
            "expression_label_5": ("error", "operator does not exist: text > integer"),
            "row_count": ("passed", "passed"),
            "not_null_order_id": ("passed", "passed"),
        }


def test_an_error_check_whose_sql_fails_fails_the_load_with_its_cause_and_writes_nothing(tmp_path: Path, pg_db_url: str) -> None:
    checks = (
        "      - expression: label > 5\n      - expression: nosuch > 0\n        severity: warn\n      - row_count: {min: 1}\n"
    )
    proj = orders_project(tmp_path / "error", pg_db_url, checks)
    summary = run_project(proj, RunOptions())
    orders = summary.objects[1001]
    assert summary.status == "failed" and orders.status == "failed"
    assert orders.error is not None
    assert "check expression_label_5 (expression, error): error: operator does not exist: text > integer" in orders.error
    assert "nothing was written" in orders.error and "first rollback" not in orders.error
    assert table_count(pg_db_url) is None  # the first load rolled back: no table
    results = finished(proj, summary.run_id)
    assert results["expression_nosuch_0"].message == missing("nosuch")  # the checks after it still ran
    assert results["row_count"].status == "passed"


def test_a_first_load_with_a_broken_warn_check_alone_is_committed_before_it_is_reported_loaded(
    tmp_path: Path, pg_db_url: str
) -> None:
    proj = orders_project(tmp_path / "alone", pg_db_url, "      - expression: nosuch > 0\n        severity: warn\n")
    summary = run_project(proj, RunOptions())
    assert (summary.status, summary.objects[1001].status) == ("succeeded", "loaded")
    assert table_count(pg_db_url) == 2
    assert finished(proj, summary.run_id)["expression_nosuch_0"].message == missing("nosuch")


PROBE_MODULE = """
def leaves_a_table(context):
    context.connection.execute("CREATE TEMPORARY TABLE sluice_probe AS SELECT 1 AS x")
    raise ValueError("this check breaks after writing")

def sees_no_table(context):
    found = context.connection.execute("SELECT to_regclass('pg_temp.sluice_probe') IS NOT NULL").fetchone()[0]
    return (1, ["sluice_probe is still there"]) if found else (0, [])
"""


def test_each_check_runs_in_a_savepoint_of_its_own_rolled_back_when_it_cannot_run(tmp_path: Path, pg_db_url: str) -> None:
    folder = tmp_path / "savepoint"
    folder.mkdir()
    (folder / "quality.py").write_text(PROBE_MODULE, encoding="utf-8")
    checks = "      - python: quality:leaves_a_table\n        severity: warn\n      - python: quality:sees_no_table\n"
    proj = orders_project(folder, pg_db_url, checks)
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded", summary.objects[1001].error
    results = finished(proj, summary.run_id)
    assert (results["python_leaves_a_table"].status, results["python_leaves_a_table"].message) == (
        "error",
        "this check breaks after writing",
    )
    assert results["python_sees_no_table"].status == "passed"
    assert table_count(pg_db_url) == 2
