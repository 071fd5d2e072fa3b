"""``sluice validate --live`` against Kafka (connectors/kafka_live.py): the brokers that objects read from and the bus
answer, the topics the objects read exist, and their dead-letter topics do unless the broker creates them; each
problem one line at its line of sluice.yaml."""

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
    source: {{type: kafka, connection: events, topic: {topic}{letters}}}
  - id: 1002
    name: stream
    source: {{type: kafka, connection: events, topic: {topic}, topics: [{other}]{letters}}}
    streaming: {{trigger: 1s}}
"""
"""Connection ``events`` at line 4, the bus at line 2, the sources of objects 1001 and 1002 at lines 8 and 11."""


def validate(
    tmp_path: Path, *, url: str, topic: str, other: str | None = None, bus: str = "sqlite:///bus.db", letters: str = ""
) -> Result:
    """``sluice validate --live`` of :data:`PROJECT`; ``letters`` is added to both sources (``, dead_letter: x``)."""
    text = PROJECT.format(bus=bus, url=url, topic=topic, other=other or topic, letters=letters)
    (tmp_path / "sluice.yaml").write_text(text)
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


def test_live_problems_of_every_check_are_listed_in_file_order(tmp_path: Path) -> None:
    """The syncs' checks run before Kafka's, but an unreachable bus at line 2 comes before a sync's problem at line 6."""
    bus_port, db_port = closed_port(), closed_port()
    (tmp_path / "sluice.yaml").write_text(
        f"name: live\nbus: kafka://127.0.0.1:{bus_port}?namespace=x\nconnections:\n"
        f"  a: mysql://u:p@127.0.0.1:{db_port}/a\n  b: postgresql://u@127.0.0.1:{db_port}/b\n"
        "syncs:\n  - {name: s, source: a, target: b, tables: [a.t]}\n"
    )
    lines = problem_lines(CliRunner().invoke(cli, ["validate", str(tmp_path), "--live"]))
    assert [line.split(": ", 1)[0] for line in lines] == [f"{tmp_path / 'sluice.yaml'}:2", f"{tmp_path / 'sluice.yaml'}:7"]
    assert "bus: Kafka at" in lines[0] and "cannot connect to a" in lines[1]


def test_without_live_no_broker_is_asked(tmp_path: Path) -> None:
    text = PROJECT.format(bus="sqlite:///bus.db", url="kafka://127.0.0.1:1", topic="t", other="t", letters="")
    (tmp_path / "sluice.yaml").write_text(text)
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


def create_topics(kafka_url: str, *names: str) -> None:
    """Create ``names`` (1 partition each); the ``topic`` fixture deletes those named after its topic afterwards."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_url.removeprefix("kafka://")})
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names], operation_timeout=10).values():
        future.result(timeout=10)


def note_lines(result: Result, prefix: str = "note: object ") -> list[str]:
    assert result.exit_code == 0, result.output
    return [line for line in result.stdout.splitlines() if line.startswith(prefix)]


@pytest.mark.kafka
def test_the_test_broker_creates_topics(kafka_url: str) -> None:
    """scripts/servers/kafka.sh sets auto.create.topics.enable=true: the broker's own answer, read as validate reads it."""
    from sluice.connectors.kafka_live import _auto_create, _topics

    bootstrap = kafka_url.removeprefix("kafka://")
    answer = _topics(bootstrap, 5.0)
    assert answer.error is None and answer.broker is not None
    assert _auto_create(bootstrap, answer.broker, 5.0) is True


@pytest.mark.kafka
def test_a_missing_dead_letter_topic_is_a_note_when_the_broker_creates_topics(tmp_path: Path, kafka_url: str, topic: str) -> None:
    broker = kafka_url.removeprefix("kafka://")
    where = f"on Kafka at {broker} (connection 'events')"
    assert note_lines(validate(tmp_path, url=kafka_url, topic=topic)) == [
        f"note: object {object_id}: dead-letter topic '{topic}.dead-letter' (of topic '{topic}') does not exist yet "
        f"{where}: the broker creates it at the first dead letter (auto.create.topics.enable=true)"
        for object_id in ("1001 (orders)", "1002 (stream)")
    ]
    named = f"{topic}-bad"
    [note, _] = note_lines(validate(tmp_path, url=kafka_url, topic=topic, letters=f", dead_letter: {named}"))
    assert note.startswith(f"note: object 1001 (orders): dead-letter topic '{named}' (of topic '{topic}') does not exist")
    assert note_lines(validate(tmp_path, url=kafka_url, topic=topic, letters=", dead_letter: false")) == []
    create_topics(kafka_url, f"{topic}.dead-letter")
    assert note_lines(validate(tmp_path, url=kafka_url, topic=topic)) == []


@pytest.mark.kafka
def test_a_missing_dead_letter_topic_is_a_problem_when_the_broker_does_not_create_topics(
    tmp_path: Path, kafka_url: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test broker creates topics and that cannot be changed while it runs: its answer is replaced, asked once."""
    asked: list[str] = []

    def does_not_create(bootstrap: str, broker: int | None, timeout_s: float) -> bool:
        asked.append(bootstrap)
        return False

    monkeypatch.setattr("sluice.connectors.kafka_live._auto_create", does_not_create)
    second = f"{topic}-second"
    create_topics(kafka_url, second)
    broker = kafka_url.removeprefix("kafka://")
    lines = problem_lines(validate(tmp_path, url=kafka_url, topic=topic, other=second))
    tail = (
        f"on Kafka at {broker} (connection 'events') and the broker does not create topics "
        "(auto.create.topics.enable=false): the first record that cannot be decoded would fail the object; "
    )
    assert lines == [
        f"{tmp_path / 'sluice.yaml'}:8: object 1001 (orders): dead-letter topic '{topic}.dead-letter' (of topic "
        f"'{topic}') does not exist {tail}create it, or set dead_letter to an existing topic or false",
        f"{tmp_path / 'sluice.yaml'}:11: object 1002 (stream): dead-letter topics '{topic}.dead-letter' (of topic "
        f"'{topic}'), '{second}.dead-letter' (of topic '{second}') do not exist {tail}create them, or set dead_letter "
        "to an existing topic or false",
    ]
    assert asked == [broker]
    lines = problem_lines(validate(tmp_path, url=kafka_url, topic=topic, other=second, letters=f", dead_letter: {topic}-bad"))
    assert lines[1].startswith(
        f"{tmp_path / 'sluice.yaml'}:11: object 1002 (stream): dead-letter topic '{topic}-bad' (of topics '{topic}', "
        f"'{second}') does not exist on Kafka at {broker}"
    )
    create_topics(kafka_url, f"{topic}.dead-letter", f"{second}.dead-letter")
    assert note_lines(validate(tmp_path, url=kafka_url, topic=topic, other=second)) == []


@pytest.mark.kafka
def test_a_missing_dead_letter_topic_is_a_note_when_the_broker_setting_cannot_be_read(
    tmp_path: Path, kafka_url: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sluice.connectors.kafka_live._auto_create", lambda *_: "Broker: Cluster authorization failed")
    [note, _] = note_lines(validate(tmp_path, url=kafka_url, topic=topic))
    assert note.endswith(
        "the broker creates it at the first dead letter if its auto.create.topics.enable is true (it could not be "
        "read: Broker: Cluster authorization failed); if it is false, create it, or set dead_letter to an existing "
        "topic or false"
    )


@pytest.mark.kafka
def test_a_missing_topic_has_no_dead_letter_line(tmp_path: Path, kafka_url: str, topic: str) -> None:
    """A topic that does not exist is the problem; its dead-letter topic's would only repeat it (a typo twice)."""
    [line] = problem_lines(validate(tmp_path, url=kafka_url, topic=topic, other=f"{topic}-missing"))
    assert "dead-letter" not in line
