"""Commands that only read a project (``sluice validate``, ``schedules``, ``runs``...) create nothing in its folder:
no ``.sluice/`` on a project that never ran; once it ran, they read its files."""

from __future__ import annotations

import shlex
from contextlib import ExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import write_yaml
from sluice.cli.main import cli
from sluice.runtime.reading import unwritten

PROJECT = """name: ro
schedules:
  nightly: {cron: "0 2 * * *"}
sensors:
  landing: {type: files, path: "in/*.csv"}
alerts:
  channels: {team: {type: slack, url: "https://hooks.example.com/x"}}
  rules: [{on: run_failed, channels: [team]}]
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}, checks: [{row_count: {min: 1}}]}
"""
READ_ONLY = [
    "validate {p}",
    "plan {p}",
    "plan {p} --json",
    "runs {p}",
    "runs {p} --json --status failed",
    "schedules {p}",
    "schedules {p} --json",
    "sensors {p}",
    "sensors {p} --json",
    "alerts {p} list",
    "check {p} --results",
    "backfill {p} --list",
    "backfill {p} --list --json",
    "state show {p}",
    "api-key list {p}",
    "prune {p} --dry-run --keep 1d",
]


@pytest.mark.parametrize("command", READ_ONLY)
def test_a_read_only_command_creates_no_sluice_folder_in_a_project_never_run(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "p"
    write_yaml(folder, PROJECT)
    result = CliRunner().invoke(cli, shlex.split(command.format(p=folder)))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["sluice.yaml"]


@pytest.mark.parametrize("command", ["check {p}", "check {p} --no-store", "check {p} --object 1001 --json"])
def test_check_on_a_project_never_run_reports_the_missing_output_and_creates_nothing(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "p"
    write_yaml(folder, PROJECT)
    result = CliRunner().invoke(cli, shlex.split(command.format(p=folder)))
    assert result.exit_code == 1 and "object 1001 (users)" in result.output, result.output  # nothing to check yet
    assert sorted(p.name for p in folder.iterdir()) == ["sluice.yaml"]


def test_once_the_project_ran_they_read_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write_yaml(folder, PROJECT)
    assert CliRunner().invoke(cli, ["run", str(folder)]).exit_code == 0
    listed = CliRunner().invoke(cli, ["runs", str(folder), "--json"])
    assert listed.exit_code == 0 and '"status": "succeeded"' in listed.output, listed.output
    results = CliRunner().invoke(cli, ["check", str(folder), "--results"])
    assert "row_count" in results.output and "passed" in results.output, results.output


def test_unwritten_replaces_only_a_sqlite_file_that_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "there.db").write_bytes(b"")
    with ExitStack() as stack:
        missing = unwritten("sqlite:///.sluice/state.db?timeout=5", tmp_path, stack)
        assert missing.endswith("/state.db?timeout=5") and str(tmp_path) not in missing
        assert Path(missing.removeprefix("sqlite:///").partition("?")[0]).parent.is_dir()
        assert unwritten("sqlite:///there.db", tmp_path, stack) == "sqlite:///there.db"
        assert unwritten("postgresql://u@h/db", tmp_path, stack) == "postgresql://u@h/db"
    assert not Path(missing.removeprefix("sqlite:///").partition("?")[0]).parent.exists()
    assert not (tmp_path / ".sluice").exists()
