"""``sluice state show|reset`` (cli/state.py): what they need of the project (the cursors' round trip through a
REST source is in tests/connectors/test_rest_incremental.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli

PROJECT = """\
name: t
connections:
  wh: postgresql://u:${SLUICE_TEST_UNSET_SECRET}@127.0.0.1:1/postgres
objects:
  - {id: 1, name: a, stage: ingest, source: {type: faker, schema: users, rows: 10}, destination: {connection: wh, table: a}}
"""


def test_state_commands_do_not_need_the_connections_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's trial: ``sluice state reset`` refused to run until every connection's variable was set."""
    monkeypatch.delenv("SLUICE_TEST_UNSET_SECRET", raising=False)
    (tmp_path / "sluice.yaml").write_text(PROJECT, encoding="utf-8")
    runner = CliRunner()
    shown = runner.invoke(cli, ["state", "show", str(tmp_path), "--json"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == "{}"
    assert runner.invoke(cli, ["state", "reset", str(tmp_path), "--object", "1"]).exit_code == 0
    assert runner.invoke(cli, ["run", str(tmp_path)]).exit_code != 0  # a run still needs them


def test_an_unset_variable_elsewhere_still_stops_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_TEST_UNSET_SECRET", raising=False)
    (tmp_path / "sluice.yaml").write_text(PROJECT.replace("name: t", "name: t\nstate: ${SLUICE_TEST_UNSET_SECRET}"))
    shown = CliRunner().invoke(cli, ["state", "show", str(tmp_path)])
    assert shown.exit_code == 2 and "SLUICE_TEST_UNSET_SECRET" in shown.output
