"""``sluice check``: an object's checks on its current output, without running it; ``sluice run`` prints a line per
check that did not pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import write_yaml
from sluice.cli.main import cli
from sluice.state.sqlite import SqliteStateStore

PROJECT = """objects:
  - id: 1001
    name: people
    source: {type: csv, path: people.csv}
    checks:
      - not_null: {columns: [email]}
        severity: warn
      - row_count: {min: 1}
  - id: 2001
    name: adults
    parents: [1001]
    sql: select * from people
    checks:
      - expression: age >= 18
"""


def test_check_runs_on_the_current_output_and_run_prints_what_did_not_pass(tmp_path: Path) -> None:
    folder = tmp_path / "cli"
    write_yaml(folder, PROJECT)
    (folder / "people.csv").write_text("id,email,age\n1,a@x,30\n2,,12\n", encoding="utf-8")
    before = CliRunner().invoke(cli, ["check", str(folder), "--object", "1001"])
    assert before.exit_code == 1 and "object 1001 (people): " in before.output and "not in the lake yet" in before.output

    ran = CliRunner().invoke(cli, ["run", str(folder)])
    assert ran.exit_code != 0
    assert "check not_null_email (not_null, warn) on object 1001 (people): failed, 1 failing row, e.g. id=2" in ran.output
    assert "check expression_age_18 (expression, error) on object 2001 (adults): failed, 1 failing row" in ran.output
    assert "row_count" not in ran.output  # passed: no line

    checked = CliRunner().invoke(cli, ["check", str(folder), "--object", "1001"])
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    assert lines[0].startswith("object 1001 (people): check not_null_email (not_null, warn): failed, 1 failing row")
    assert lines[1].startswith("object 1001 (people): check row_count (row_count, error): passed in ")
    assert lines[1].endswith("s (covered: table, 2 rows)")  # no load: the current output, whole
    as_json = CliRunner().invoke(cli, ["check", str(folder), "--json", "--no-store"])
    assert as_json.exit_code == 1  # adults' error check failed in the run: its output never became current
    lines = as_json.output.splitlines()
    results = [json.loads(line) for line in lines[:2]]
    assert [(r["object_id"], r["check"], r["status"]) for r in results] == [
        (1001, "not_null_email", "failed"),
        (1001, "row_count", "passed"),
    ]
    assert lines[2:] == [
        "object 2001 (adults): it has no current output: the one its last run wrote failed an error check and is kept "
        "at cleaned/adults.candidate.parquet, not made current; fix it and run the object again"
    ]
    store = SqliteStateStore(folder / ".sluice" / "state.db")
    try:
        kept = store.check_results("cli")
    finally:
        store.close()
    assert [(r.run_id == "", r.check) for r in kept[:2]] == [(True, "row_count"), (True, "not_null_email")]
    assert len(kept) == 5  # the run's three, sluice check's two; --no-store kept none
    shown = CliRunner().invoke(cli, ["check", str(folder), "--results", "--object", "2001"])
    assert shown.exit_code == 0 and len(shown.output.splitlines()) == 1, shown.output
    assert "object 2001 (adults): check expression_age_18 (expression, error): failed, 1 failing row" in shown.output
    assert shown.output.rstrip().endswith("(covered: load, 2 rows)")  # checked in the run, on the rows it wrote
    as_rows = CliRunner().invoke(cli, ["check", str(folder), "--results", "--json", "--limit", "2"])
    assert [json.loads(line)["check"] for line in as_rows.output.splitlines()] == ["row_count", "not_null_email"]


@pytest.mark.postgres
def test_check_on_a_destination_table_never_loaded_says_run_it_first_and_keeps_nothing(tmp_path: Path, pg_db_url: str) -> None:
    """As for a lake output not written yet: one line naming the object, not PostgreSQL's 'relation does not exist',
    and no state store created for a project that never ran."""
    folder = tmp_path / "never_loaded"
    write_yaml(folder, f"""connections:
  dw: {pg_db_url}
objects:
  - id: 1001
    name: people
    source: {{type: csv, path: people.csv}}
    destination: {{connection: dw, table: shop.people}}
    checks:
      - row_count: {{min: 1}}
""")  # fmt: skip
    checked = CliRunner().invoke(cli, ["check", str(folder)])
    assert checked.exit_code == 1
    assert checked.output == "object 1001 (people): its table shop.people in 'dw' is not loaded yet; run it first\n"
    assert not (folder / ".sluice").exists()
