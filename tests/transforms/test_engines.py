"""Which names a transform sees its parents under, when parents of different stages share a name."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from helpers import load, write_yaml
from sluice.project.model import Project
from sluice.runtime.run import RunOptions, run_project
from sluice.transforms.engines import python_arguments, sql_tables

PROJECT = """
objects:
  - {id: 1001, name: customers, source: {type: csv, path: customers.csv}}
  - {id: 2001, name: customers, parents: [1001], sql: "select id, upper(name) as name from customers"}
  - id: 3001
    name: customers
    parents: [1001, 2001]
    sql: >-
      select r.id, r.name as raw, c.name as clean
      from raw.customers r join standardize.customers c using (id) order by r.id
  - {id: 3002, name: audit, parents: [1001, 2001], python: "audit:compare"}
  - {id: 3003, name: report, parents: [2001], sql: "select count(*) as n from customers join cleaned.customers using (id)"}
"""


def clashing(tmp_path: Path) -> Project:
    folder = tmp_path / "clash"
    write_yaml(folder, PROJECT)
    (folder / "customers.csv").write_text("id,name\n1,ada\n2,bob\n", encoding="utf-8")
    (folder / "audit.py").write_text(
        "import pyarrow as pa\n"
        "def compare(raw_customers, cleaned_customers):\n"
        "    return pa.table({'raw': raw_customers['name'], 'clean': cleaned_customers['name']})\n",
        encoding="utf-8",
    )
    return load(folder)


def test_parents_with_one_name_are_told_apart_by_layer_or_stage(tmp_path: Path) -> None:
    project = clashing(tmp_path)
    inputs = {"raw.customers": "raw/customers", "cleaned.customers": "cleaned/customers"}
    tables = sql_tables(project, project.objects[3001], inputs)
    assert tables == {
        "raw.customers": "raw/customers",
        "ingest.customers": "raw/customers",
        "cleaned.customers": "cleaned/customers",
        "standardize.customers": "cleaned/customers",
    }  # plain 'customers' would name either: left out
    assert python_arguments(project, project.objects[3002], inputs) == {
        "raw_customers": "raw/customers",
        "cleaned_customers": "cleaned/customers",
    }
    single = sql_tables(project, project.objects[3003], {"customers": "cleaned/customers"})
    assert single == {
        "customers": "cleaned/customers",
        "cleaned.customers": "cleaned/customers",
        "standardize.customers": "cleaned/customers",
    }
    assert python_arguments(project, project.objects[2001], {"customers": "raw/customers"}) == {"customers": "raw/customers"}


def test_a_run_reads_each_parent_under_its_qualified_name(tmp_path: Path) -> None:
    project = clashing(tmp_path)
    summary = run_project(project, RunOptions(targets=[3001, 3002, 3003]))
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    rows = pq.read_table(project.resolve_lake_path() / "curated" / "customers.parquet").to_pylist()
    assert rows == [{"id": 1, "raw": "ada", "clean": "ADA"}, {"id": 2, "raw": "bob", "clean": "BOB"}]
    assert summary.objects[3002].rows == 2 and summary.objects[3003].rows == 1
