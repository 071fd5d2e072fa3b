"""``sluice state show|reset`` (cli/state.py): what they need of the project (the cursors' round trip through a
REST source is in tests/connectors/test_rest_incremental.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from connectors.kafka_fixtures import Produce
from connectors.test_kafka_source import orders, project, run
from sluice.cli.main import cli
from sluice.state.sqlite import SqliteStateStore
from streaming.streams import write_project

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


@pytest.mark.kafka
def test_reset_prints_the_objects_groups_and_partitions_it_reset(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic, f"      columns: [_partition, _offset]\n      group: cli-{topic}")
    produce(orders(0, 6))
    ends = {0: 0, 1: 0, 2: 0}  # a partition without records is committed at its high watermark too
    for row in run(shop, store).group_by("_partition").aggregate([("_offset", "max")]).to_pylist():
        ends[row["_partition"]] = row["_offset_max"] + 1
    partitions = ", ".join(f"{p} (at {end})" for p, end in ends.items())
    state = f"sqlite:///{tmp_path / 'state.db'}"

    reset = CliRunner().invoke(cli, ["state", "reset", str(shop.root), "--object", "1001", "--state", state])

    assert reset.exit_code == 0, reset.output
    assert reset.stdout.splitlines() == [
        "reset the cursor of object(s) 1001; their next run reads from the start",
        f"reset consumer group cli-{topic} of object 1001 (orders): forgot its offsets of {topic} partition(s) {partitions}; "
        f"its next run reads {topic} from its earliest offsets",
    ]
    again = CliRunner().invoke(cli, ["state", "reset", str(shop.root), "--all", "--state", state])
    assert again.stdout.splitlines() == [
        f"reset consumer group cli-{topic} of object 1001 (orders): it had no committed offsets; "
        f"its next run reads {topic} from its earliest offsets"
    ]


def test_reset_refuses_a_streaming_object_in_one_line(tmp_path: Path) -> None:
    """Its offsets are in the lake with its files: nothing to ask a broker (none runs here)."""
    write_project(tmp_path, "kafka://127.0.0.1:1", "events")
    refused = CliRunner().invoke(cli, ["state", "reset", str(tmp_path), "--object", "1001"])
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: object 1001 (events) is a streaming object: its offsets are committed with")
    assert refused.stderr.count("\n") == 1
    left = CliRunner().invoke(cli, ["state", "reset", str(tmp_path), "--all"])
    assert left.exit_code == 0 and left.stderr.startswith("not reset: object 1001 (events) is a streaming object")
