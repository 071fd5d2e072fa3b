"""``sluice validate --live`` against Kafka (connectors/kafka_live.py): the brokers that objects read from and the bus
answer, the topics the objects read exist; each problem one line at its line of sluice.yaml."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sluice.cli.main import cli
from sluice.connectors.kafka_live import KafkaLive, live_kafka
from sluice.project.load import load_project

PROJECT = """\
name: live
bus: {bus}
connections:
  events: {url}
objects:
  - id: 1001
    name: orders
    source: {{type: kafka, connection: events, topic: {topic}}}
  - id: 1002
    name: stream
    source: {{type: kafka, connection: events, topic: {topic}, topics: [{other}]}}
    streaming: {{trigger: 1s}}
"""
"""Connection ``events`` at line 4, the bus at line 2, the sources of objects 1001 and 1002 at lines 8 and 11."""


def validate(tmp_path: Path, *, url: str, topic: str, other: str | None = None, bus: str = "sqlite:///bus.db") -> Result:
    (tmp_path / "sluice.yaml").write_text(PROJECT.format(bus=bus, url=url, topic=topic, other=other or topic))
    return CliRunner().invoke(cli, ["validate", str(tmp_path), "--live"])


def closed_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that cannot be reached is given up on sooner than the default."""
    monkeypatch.setattr("sluice.connectors.kafka_live.LIVE_TIMEOUT_S", 1.0)


def problem_lines(result: Result) -> list[str]:
    """The problems of a failed validate, each on its own line of stderr."""
    assert result.exit_code == 2, result.output
    header, *lines = result.stderr.splitlines()
    assert header == f"error: {len(lines)} problem{'s' if len(lines) != 1 else ''} in the project:"
    return [line.removeprefix("  - ") for line in lines]


@pytest.mark.kafka
def test_a_reachable_broker_with_the_topics_passes_and_a_kafka_bus_says_it_creates_its_topics(
    tmp_path: Path, kafka_url: str, kafka_ns_url: str, topic: str
) -> None:
    result = validate(tmp_path, url=kafka_url, topic=topic, bus=kafka_ns_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {tmp_path / 'sluice.yaml'} defines 2 objects")
    namespace = kafka_ns_url.rpartition("namespace=")[2]
    [note] = [line for line in result.stdout.splitlines() if line.startswith("note: bus:")]
    assert f"{namespace}.sluice.events" in note and f"{namespace}.sluice.ready.ingest" in note
    broker = kafka_url.removeprefix("kafka://")
    assert note.endswith(f"on Kafka at {broker}: Sluice creates them the first time the bus uses them (docs/bus.md)")


@pytest.mark.kafka
def test_a_missing_topic_is_one_line_at_the_objects_source(tmp_path: Path, kafka_url: str, topic: str) -> None:
    missing = f"{topic}-missing"
    broker = kafka_url.removeprefix("kafka://")
    lines = problem_lines(validate(tmp_path, url=kafka_url, topic=topic, other=missing))
    assert lines == [
        f"{tmp_path / 'sluice.yaml'}:11: object 1002 (stream): topic '{missing}' does not exist on Kafka at {broker} "
        "(connection 'events'); Sluice does not create the topics it reads: create it or fix 'topic' / 'topics'"
    ]
    lines = problem_lines(validate(tmp_path, url=kafka_url, topic=missing))
    assert [line.split(": ", 2)[:2] for line in lines] == [
        [f"{tmp_path / 'sluice.yaml'}:8", "object 1001 (orders)"],
        [f"{tmp_path / 'sluice.yaml'}:11", "object 1002 (stream)"],
    ]
    assert lines[0].endswith(
        f"topic '{missing}' does not exist on Kafka at {broker} (connection 'events'); Sluice does not create the "
        "topics it reads: create it or fix 'topic'"
    )


def test_an_unreachable_broker_is_one_line_at_its_connection(tmp_path: Path) -> None:
    port = closed_port()
    [line] = problem_lines(validate(tmp_path, url=f"kafka://127.0.0.1:{port}", topic="orders"))
    assert line.startswith(
        f"{tmp_path / 'sluice.yaml'}:4: connection 'events' (read by object 1001 (orders), object 1002 (stream)): "
        f"Kafka at 127.0.0.1:{port} did not answer within 1 s ("
    )
    assert line.endswith("); start the broker or fix the connection's kafka://host:port URL")


@pytest.mark.kafka
def test_an_unreachable_kafka_bus_is_one_line_at_bus(tmp_path: Path, kafka_url: str, topic: str) -> None:
    port = closed_port()
    [line] = problem_lines(validate(tmp_path, url=kafka_url, topic=topic, bus=f"kafka://127.0.0.1:{port}?namespace=x"))
    assert line.startswith(f"{tmp_path / 'sluice.yaml'}:2: bus: Kafka at 127.0.0.1:{port} did not answer within 1 s (")
    assert line.endswith("); start the broker, or point 'bus:' at a running one")


def test_without_live_no_broker_is_asked(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(PROJECT.format(bus="sqlite:///bus.db", url="kafka://127.0.0.1:1", topic="t", other="t"))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "note: bus" not in result.stdout


@pytest.mark.kafka
def test_a_project_of_syncs_only_gets_no_note_about_the_topics_of_runs(tmp_path: Path, kafka_ns_url: str) -> None:
    """A project of syncs only never uses the topics runs hand work out on: no note names them (a trial found one)."""
    (tmp_path / "sluice.yaml").write_text(
        f"name: live\nbus: {kafka_ns_url}\nconnections:\n  a: mysql://u:p@127.0.0.1:1/a\n  b: postgresql://u@127.0.0.1:1/b\n"
        "syncs:\n  - {name: s, source: a, target: b, tables: [a.t]}\n"
    )
    assert live_kafka(load_project(tmp_path)) == KafkaLive()
