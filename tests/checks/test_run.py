"""Every check type, on DuckDB (the lake) and inside PostgreSQL (a destination), with severity warn and error:
events, the object's outcome, its children, where results are kept, metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from helpers import events_of, load, write_yaml
from sluice import events as ev
from sluice.checks.run import CheckRunner
from sluice.checks.settings import ExpressionOptions, NotNullOptions, RelationshipsOptions
from sluice.checks.store import load_results, prune_results
from sluice.lake.registry import open_lake
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, open_backends, run_project

USERS = """user_id,email,country,amount,ts
1,a@x,FR,10,2020-01-01 00:00:00
2,,FR,-5,2020-01-01 00:00:00
2,c@x,XX,3,2020-01-01 00:00:00
3,d@x,DE,7,2020-01-01 00:00:00
"""
COUNTRIES = "code,name\nFR,France\nDE,Germany\n"
CHECK_MODULE = """
def user_three(context):
    assert context.place in ("duckdb", "postgres", "spark") and context.connection is not None
    return "select user_id from {{ this }} where user_id = 3"

def counted(context):
    return 2, ["user_id=8", "user_id=9"]
"""
# Each failing check with the failing rows it must count (one of each), then checks that pass.
FAILING = {
    "not_null_email": ("not_null: {columns: [email]}", 1),
    "unique_user_id": ("unique: {columns: [user_id]}", 1),
    "accepted_values_country": ("accepted_values: {column: country, values: [FR, DE]}", 1),
    "relationships_country": ("relationships: {column: country, to: countries, field: code}", 1),
    "row_count": ("row_count: {max: 3}", 1),
    "freshness_ts": ("freshness: {column: ts, max_age: 1h}", 1),
    "expression_amount_0": ("expression: amount >= 0", 1),
    "sql_big": ("sql: 'select * from {{ this }} where amount > 8'\n        name: sql_big", 1),
    "python_user_three": ("python: quality:user_three", 1),
    "python_counted": ("python: quality:counted", 2),
}
PASSING = {
    "not_null_user_id": "not_null: {columns: [user_id]}",
    "unique_user_id_email": "unique: {columns: [user_id, email]}",
    "row_count": "row_count: {min: 1}\n        name: enough_rows",
}


def project(tmp_path: Path, severity: str, pg_url: str | None, *, head: str = "", engine: str = "") -> Project:
    """``users`` (checked) and ``countries`` from CSV files: in PostgreSQL tables with ``pg_url``, else in the lake;
    with ``engine`` (``spark``), ``users`` is computed by that engine from ``raw_users`` (checked on Spark)."""
    folder = tmp_path / f"checks_{severity}_{'pg' if pg_url else engine or 'lake'}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.csv").write_text(USERS, encoding="utf-8")
    (folder / "countries.csv").write_text(COUNTRIES, encoding="utf-8")
    (folder / "quality.py").write_text(CHECK_MODULE, encoding="utf-8")
    checks = [f"      - {text}\n        severity: {severity}" for text, _ in FAILING.values()]
    checks += [f"      - {text}" for text in PASSING.values()]
    destination = "\n    destination: {connection: warehouse, table: shop.%s}"
    connections = f"connections:\n  warehouse: {pg_url}\n" if pg_url else ""
    work = "source: {type: csv, path: users.csv}\n    parents: [1001]"
    raw = ""
    if engine:
        raw = "  - {id: 1003, name: raw_users, source: {type: csv, path: users.csv}}\n"
        work = f"parents: [1003, 1001]\n    engine: {engine}\n    sql: select * from raw_users"
    write_yaml(
        folder,
        f"""{head}{connections}objects:
  - id: 1001
    name: countries
    source: {{type: csv, path: countries.csv}}{destination % "countries" if pg_url else ""}
{raw}  - id: 2002
    name: users
    {work}{destination % "users" if pg_url else ""}
    checks:
{chr(10).join(checks)}
  - {{id: 3001, name: after, parents: [2002], sql: select count(*) as n from users}}
""",
    )
    return load(folder)


PLACES = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def warehouse(request: pytest.FixtureRequest, place: str) -> str | None:
    return str(request.getfixturevalue("pg_db_url")) if place == "postgres" else None


def finished(project: Project, run_id: str) -> dict[str, ev.CheckFinished]:
    return {e.check: e for _, e in events_of(project, run_id) if isinstance(e, ev.CheckFinished)}


@pytest.mark.parametrize("place", PLACES)
def test_warn_checks_record_every_type_and_release_the_children(
    tmp_path: Path, place: str, request: pytest.FixtureRequest
) -> None:
    proj = project(tmp_path, "warn", warehouse(request, place))
    summary = run_project(proj, RunOptions())
    assert summary.status == "succeeded"
    assert summary.objects[2002].status == "loaded"
    assert summary.objects[3001].status == "loaded"
    results = finished(proj, summary.run_id)
    for name, (_, failing) in FAILING.items():
        event = results[name]
        assert (event.status, event.failing_rows, event.severity) == ("failed", failing, "warn"), (name, event)
        assert event.sample, name
    assert results["unique_user_id"].sample == ["user_id=2, occurrences=2"]
    assert results["accepted_values_country"].sample == ["country=XX"]
    assert results["python_counted"].sample == ["user_id=8", "user_id=9"]
    for name in ("not_null_user_id", "unique_user_id_email", "enough_rows"):
        assert (results[name].status, results[name].failing_rows, results[name].sample) == ("passed", 0, [])
    with open_backends(proj) as backends:
        kept = load_results(proj, backends.state, run_id=summary.run_id)
    assert {r.check: (r.status, r.failing_rows) for r in kept} == {n: (e.status, e.failing_rows) for n, e in results.items()}
    assert all(r.object == "users" and r.object_id == 2002 for r in kept)
    labels = {"project": proj.name, "object": "users", "check": "not_null_email", "kind": "not_null", "severity": "warn"}
    assert REGISTRY.get_sample_value("sluice_check_runs_total", {**labels, "status": "failed"}) == 1.0
    gauge = {"project": proj.name, "object": "users", "check": "python_counted"}
    assert REGISTRY.get_sample_value("sluice_check_failing_rows", gauge) == 2.0


@pytest.mark.parametrize("place", PLACES)
def test_a_failing_error_check_fails_the_object_for_good_and_skips_its_children(
    tmp_path: Path, place: str, request: pytest.FixtureRequest
) -> None:
    proj = project(tmp_path, "error", warehouse(request, place))
    summary = run_project(proj, RunOptions())
    assert summary.status == "failed"
    users = summary.objects[2002]
    assert (users.status, users.attempt) == ("failed", 1)
    assert users.error is not None and "check not_null_email (not_null, error): failed, 1 failing row" in users.error
    assert "check python_counted (python, error): failed, 2 failing rows, e.g. user_id=8; user_id=9" in users.error
    assert "enough_rows" not in users.error
    assert summary.objects[3001].status == "skipped"
    log = [e for _, e in events_of(proj, summary.run_id)]
    failed = [e for e in log if isinstance(e, ev.ObjectFailed)]
    assert len(failed) == 1 and not failed[0].retryable and failed[0].error_type == "CheckFailed"
    checks = [i for i, e in enumerate(log) if isinstance(e, ev.CheckFinished)]
    assert len(checks) == len(FAILING) + len(PASSING) and max(checks) < log.index(failed[0])
    if place == "postgres":  # checked inside the load's transaction: rolled back, nothing written
        import psycopg

        assert "nothing was written: the load into table 'shop.users' was rolled back" in users.error
        with psycopg.connect(str(request.getfixturevalue("pg_db_url"))) as conn:
            assert conn.execute("SELECT to_regclass('shop.users')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM shop.countries").fetchone() == (2,)


@pytest.mark.postgres
def test_an_append_whose_error_check_fails_writes_nothing_and_the_fixed_run_loads_once(tmp_path: Path, pg_db_url: str) -> None:
    import psycopg

    folder = tmp_path / "append"
    folder.mkdir()
    (folder / "orders.csv").write_text("order_id,amount\n1,10\n2,20\n", encoding="utf-8")
    write_yaml(
        folder,
        f"""connections:
  warehouse: {pg_db_url}
objects:
  - id: 1001
    name: orders
    source: {{type: csv, path: orders.csv}}
    destination: {{connection: warehouse, table: shop.orders, mode: append}}
    checks:
      - unique: {{columns: [order_id]}}
        severity: error
      - expression: amount < 25
        severity: warn
""",
    )
    proj = load(folder)
    assert run_project(proj, RunOptions()).status == "succeeded"
    (folder / "orders.csv").write_text("order_id,amount\n3,30\n3,30\n", encoding="utf-8")
    failed = run_project(proj, RunOptions())
    orders = failed.objects[1001]
    assert orders.status == "failed" and "occurrences=2" in (orders.error or "")
    assert "nothing was written: the load into table 'shop.orders' was rolled back" in (orders.error or "")
    results = finished(proj, failed.run_id)  # every check ran in the load, the warn one too
    assert (results["unique_order_id"].status, results["expression_amount_25"].failing_rows) == ("failed", 2)
    with psycopg.connect(pg_db_url) as conn:
        assert conn.execute("SELECT order_id FROM shop.orders ORDER BY 1").fetchall() == [(1,), (2,)]
    (folder / "orders.csv").write_text("order_id,amount\n3,30\n4,40\n", encoding="utf-8")
    assert run_project(proj, RunOptions()).status == "succeeded"
    with psycopg.connect(pg_db_url) as conn:
        assert conn.execute("SELECT order_id FROM shop.orders ORDER BY 1").fetchall() == [(1,), (2,), (3,), (4,)]


def test_the_batched_scan_and_one_query_per_check_agree_and_a_broken_check_breaks_alone(tmp_path: Path) -> None:
    proj = project(tmp_path, "warn", None)
    assert run_project(proj, RunOptions()).status == "succeeded"
    users = proj.objects[2002]
    broken = dataclasses.replace(
        users.checks[0], name="broken", kind="expression", options=ExpressionOptions(expression="nosuch > 0")
    )
    users = dataclasses.replace(users, checks=(*users.checks, broken))
    lake = open_lake(proj)
    batched = CheckRunner(proj, lake).run(users, "r", store=False).results
    alone = CheckRunner(proj, lake, batch=False).run(users, "r", store=False).results
    assert [(r.check, r.status, r.failing_rows, r.sample) for r in batched] == [
        (r.check, r.status, r.failing_rows, r.sample) for r in alone
    ]
    assert [r.check for r in batched if r.status == "error"] == ["broken"]  # the others were counted alone
    assert "nosuch" in batched[-1].message


def test_an_unreachable_place_is_a_transient_error_and_a_missing_output_a_terminal_one(tmp_path: Path) -> None:
    from sluice.errors import TerminalError, TransientError

    proj = project(tmp_path, "error", "postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(TransientError, match="cannot connect to 'warehouse' to run checks"):
        CheckRunner(proj, open_lake(proj)).run(proj.objects[2002], "r")
    lake_only = project(tmp_path / "lake", "error", None)
    with pytest.raises(TerminalError, match="not in the lake yet; run it first"):
        CheckRunner(lake_only, open_lake(lake_only)).run(lake_only.objects[2002], "r")


@pytest.mark.postgres
def test_results_go_to_metrics_check_results_again_after_the_table_is_dropped(tmp_path: Path, pg_db_url: str) -> None:
    import psycopg

    proj = project(tmp_path, "warn", pg_db_url)
    assert run_project(proj, RunOptions()).status == "succeeded"
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA metrics CASCADE")
    checked = CheckRunner(proj, open_lake(proj)).run(proj.objects[2002], "again")
    assert checked.stored == "metrics.check_results"
    assert len(load_results(proj, None, run_id="again")) == len(FAILING) + len(PASSING)
    assert prune_results(proj, None, checked.results[0].checked_at - 3600) == 0
    assert prune_results(proj, None, checked.results[-1].checked_at + 1) == len(FAILING) + len(PASSING)
    assert load_results(proj, None) == []


@pytest.mark.parametrize("place", PLACES)
def test_a_column_validation_could_not_know_is_named_when_the_check_runs(
    tmp_path: Path, place: str, request: pytest.FixtureRequest
) -> None:
    """users comes from a CSV file, so its columns are known only once written: a check naming a column it lacks is
    an error naming the check, the object and the column (not the engine's binder message)."""
    # warn checks in PostgreSQL: error ones would roll the table's load back (tested above)
    proj = project(tmp_path, "warn" if place == "postgres" else "error", warehouse(request, place))
    lake = open_lake(proj)
    if place == "postgres":
        assert run_project(proj, RunOptions()).status == "succeeded"
        written = lake.current_location("cleaned", "users")
    else:
        assert run_project(proj, RunOptions()).status == "failed"  # writes the output (the checks then fail)
        written = lake.current_location("cleaned", "users.candidate")  # failed: never made the current output
        assert written is not None and lake.current_location("cleaned", "users") is None
    users = proj.objects[2002]
    first = dataclasses.replace(users.checks[0], severity="error")
    broken = [
        dataclasses.replace(first, name="expr", kind="expression", options=ExpressionOptions(expression="amout >= 0")),
        dataclasses.replace(first, name="ref", kind="relationships", options=RelationshipsOptions("country", "countries", "cod")),
        dataclasses.replace(first, name="nn", kind="not_null", options=NotNullOptions(["emial"])),
    ]
    results = CheckRunner(proj, lake).run(dataclasses.replace(users, checks=tuple(broken)), "r", written, store=False)
    columns = "user_id, email, country, amount, ts"
    assert [(r.check, r.status, r.message) for r in results.results] == [
        ("expr", "error", f"column 'amout' is not in the output of object 2002 (users) (its columns: {columns}). "
         "Did you mean 'amount'? Fix the check's column, or select it in the object's SQL"),
        ("ref", "error", "column 'cod' is not in the output of object 1001 (countries), which relationships refers to "
         "(its columns: code, name). Did you mean 'code'? Fix the check's column, or select it in the object's SQL"),
        ("nn", "error", f"column 'emial' is not in the output of object 2002 (users) (its columns: {columns}). "
         "Did you mean 'email'? Fix the check's column, or select it in the object's SQL"),
    ]  # fmt: skip
    assert results.failure.startswith("object 2002 (users): check expr (expression, error): error: column 'amout'")
