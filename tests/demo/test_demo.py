from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from rich.console import Console

from sluice.cli.main import cli
from sluice.demo.build import PROJECT_FILES, TEMPLATES, build_demo, describe_outputs, warehouse_path
from sluice.demo.data import DATA_FILES, make_data
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, RunSummary, run_project

EXAMPLE = Path(__file__).parents[2] / "examples" / "demo"
DIMENSIONS = {"dim_users": "user_id", "dim_products": "product_id", "dim_date": "date_key"}
AGGREGATES = (
    "revenue_by_country_month",
    "top_products",
    "customer_lifetime_value",
    "cohort_retention",
    "daily_active_users",
    "refund_rate_by_category",
    "channel_mix",
    "monthly_kpis",
    "risk_by_region",
    "data_quality",
)


@dataclass
class DemoRuns:
    project: Project
    first: RunSummary
    second: RunSummary


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    root = build_demo(tmp_path_factory.mktemp("demo") / "shop", users=300, transactions=3000, seed=11)
    project = load_project(root)
    first = run_project(project, RunOptions())
    second = run_project(project, RunOptions())
    return DemoRuns(project, first, second)


def warehouse(project: Project) -> duckdb.DuckDBPyConnection:
    path = warehouse_path(project)
    assert path is not None and path.is_file()
    return duckdb.connect(str(path), read_only=True)


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_build_writes_a_project_with_three_stages(tmp_path: Path) -> None:
    root = build_demo(tmp_path / "demo", users=60, transactions=400)
    assert root.is_absolute()
    for name in (*PROJECT_FILES, *(f"data/{file}" for file in DATA_FILES)):
        assert (root / name).is_file(), name
    project = load_project(root)
    per_stage = {stage: sum(1 for obj in project.objects.values() if obj.stage == stage) for stage in project.stage_names}
    assert sum(per_stage.values()) >= 28
    assert all(count >= 7 for count in per_stage.values()), per_stage
    kinds = {obj.source.kind for obj in project.objects.values() if obj.source is not None}
    assert kinds == {"csv", "parquet", "jsonl", "json", "faker"}
    assert any(obj.python for obj in project.objects.values())
    products = json.loads((root / "data" / "products.json").read_text())
    assert isinstance(products, list) and products


def test_rebuild_leaves_files_and_state_alone(tmp_path: Path) -> None:
    root = build_demo(tmp_path / "demo", users=60, transactions=400)
    (root / ".sluice").mkdir()
    (root / ".sluice" / "state.db").write_bytes(b"keep me")
    before = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    assert build_demo(tmp_path / "demo", users=60, transactions=400) == root
    after = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    assert after == before


def test_rebuild_with_other_sizes_rewrites_data(tmp_path: Path) -> None:
    root = build_demo(tmp_path / "demo", users=60, transactions=400)
    users = (root / "data" / "users.csv").read_bytes()
    build_demo(tmp_path / "demo", users=80, transactions=400)
    assert (root / "data" / "users.csv").read_bytes() != users


def test_data_is_deterministic_for_a_seed() -> None:
    assert make_data(users=40, transactions=200, seed=3) == make_data(users=40, transactions=200, seed=3)
    assert (
        make_data(users=40, transactions=200, seed=3)["users.csv"] != make_data(users=40, transactions=200, seed=4)["users.csv"]
    )


def test_first_run_loads_every_object(runs: DemoRuns) -> None:
    assert runs.first.status == "succeeded"
    assert set(runs.first.objects) == set(runs.project.objects)
    failed = {oid: (s.status, s.error) for oid, s in runs.first.objects.items() if s.status != "loaded"}
    assert not failed


def test_warehouse_holds_star_schema_and_aggregates(runs: DemoRuns) -> None:
    with warehouse(runs.project) as con:
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {*DIMENSIONS, "fact_transactions", *AGGREGATES} <= tables
        users = scalar(con, "SELECT count(*) FROM dim_users")
        facts = scalar(con, "SELECT count(*) FROM fact_transactions")
        assert 250 <= users <= 300
        assert 2700 <= facts <= 3000
        assert scalar(con, "SELECT count(*) FROM dim_products") >= 40
        assert 300 <= scalar(con, "SELECT count(*) FROM dim_date") <= 366
        for aggregate in AGGREGATES:
            assert scalar(con, f"SELECT count(*) FROM {aggregate}") > 0, aggregate


def test_warehouse_keys_are_consistent(runs: DemoRuns) -> None:
    with warehouse(runs.project) as con:
        for table, key in DIMENSIONS.items():
            assert scalar(con, f"SELECT count(*) - count(DISTINCT {key}) FROM {table}") == 0, table
        assert scalar(con, "SELECT count(*) - count(DISTINCT transaction_id) FROM fact_transactions") == 0
        for table, key in DIMENSIONS.items():
            orphans = scalar(con, f"SELECT count(*) FROM fact_transactions AS f ANTI JOIN {table} AS d USING ({key})")
            assert orphans == 0, f"fact_transactions.{key} not in {table}"
        assert scalar(con, "SELECT count(*) FROM fact_transactions WHERE amount_eur <= 0") == 0
        assert scalar(con, "SELECT count(*) FROM dim_users WHERE email <> lower(trim(email))") == 0
        revenue = scalar(con, "SELECT round(sum(revenue_eur)) FROM revenue_by_country_month")
        assert revenue == scalar(con, "SELECT round(sum(amount_eur)) FROM fact_transactions WHERE status = 'completed'")


def test_second_run_skips_every_object_as_fresh(runs: DemoRuns) -> None:
    assert runs.second.status == "succeeded"
    assert set(runs.second.objects) == set(runs.project.objects)
    not_fresh = {
        oid: (s.status, s.reason)
        for oid, s in runs.second.objects.items()
        if s.status != "skipped" or not (s.reason or "").startswith("fresh")
    }
    assert not not_fresh


def test_describe_outputs_names_lake_layers_and_warehouse_tables(runs: DemoRuns) -> None:
    console = Console(record=True, width=160)
    console.print(describe_outputs(runs.project, runs.first))
    text = console.export_text()
    for word in ("raw", "cleaned", "curated", "warehouse.duckdb", "fact_transactions", "revenue_by_country_month"):
        assert word in text


def test_cli_demo_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert {state["status"] for state in summary["objects"].values()} == {"loaded"}


def test_example_project_matches_the_builder_and_validates() -> None:
    project = load_project(EXAMPLE)
    assert len(project.objects) >= 28
    for name in PROJECT_FILES:
        assert (EXAMPLE / name).read_bytes() == (TEMPLATES / name).read_bytes(), f"examples/demo/{name} is stale; rebuild it"
    assert sum((EXAMPLE / "data" / name).stat().st_size for name in DATA_FILES) < 1_000_000
    assert not (EXAMPLE / "warehouse.duckdb").exists()
