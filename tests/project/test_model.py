"""ObjectSpec's definition, whose hash decides freshness: what enters it and what a change of it does to a run."""

from __future__ import annotations

from pathlib import Path

from helpers import load, write_yaml
from sluice.runtime.run import RunOptions, run_project

OBJECTS = """
objects:
  - id: 1001
    name: people
    source: {{type: csv, path: people.csv}}{checks}
  - {{id: 2001, name: adults, parents: [1001], sql: "select * from people where age >= 18"}}
"""


def test_a_new_or_changed_check_runs_the_object_again_and_moving_it_does_not(tmp_path: Path) -> None:
    """Checks are part of the object's definition: adding or changing one makes a fresh object run (and so be checked)
    again; its declaration moving to another line leaves the object fresh."""
    (tmp_path / "people.csv").write_text("id,email,age\n1,a@x,30\n2,,40\n", encoding="utf-8")
    write_yaml(tmp_path, OBJECTS.format(checks=""))
    assert run_project(load(tmp_path), RunOptions()).counts() == {"loaded": 2}
    assert run_project(load(tmp_path), RunOptions()).counts() == {"skipped": 2}

    warn = "\n    checks: [{not_null: {columns: [email]}, severity: warn}]"
    write_yaml(tmp_path, OBJECTS.format(checks=warn))
    first = load(tmp_path).objects[1001].definition_hash()
    assert run_project(load(tmp_path), RunOptions()).counts() == {"loaded": 1, "skipped": 1}  # checked, same data

    write_yaml(tmp_path, "\n" + OBJECTS.format(checks=warn.replace("[{", "\n      [{")))  # moved, not changed
    assert load(tmp_path).objects[1001].definition_hash() == first
    assert run_project(load(tmp_path), RunOptions()).counts() == {"skipped": 2}

    write_yaml(tmp_path, OBJECTS.format(checks=warn.replace("warn", "error")))  # now it stops the bad data
    failed = run_project(load(tmp_path), RunOptions())
    assert failed.status == "failed" and failed.counts() == {"failed": 1, "skipped": 1}
