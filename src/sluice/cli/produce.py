"""``sluice produce faker``: seeded fake events to a Kafka topic at a steady rate, for demos and load tests.

The events are :mod:`sluice.streaming.faker_events`; the pacing and the loop :mod:`sluice.streaming.produce`.
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click

from sluice.errors import ConfigError, SluiceError
from sluice.streaming import DEFAULT_EVENT_START, EVENT_SCHEMAS

USER_ERROR = 2


@click.group()
def produce() -> None:
    """Write records to a Kafka topic (demos, load tests)."""


@produce.command("faker")
@click.option("--schema", "schema", type=click.Choice(EVENT_SCHEMAS), required=True, help="Which events to write.")
@click.option("--topic", required=True, help="The topic; created (with --partitions) when it does not exist.")
@click.option("--rate", default="1000/s", show_default=True, help="Records per second (1000/s); 0: as fast as possible.")
@click.option("--count", type=click.IntRange(min=0), help="Records to write (default: until interrupted).")
@click.option("--seed", type=click.IntRange(min=0), default=42, show_default=True, help="The same seed writes the same records.")
@click.option(
    "--malformed", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Share of malformed records (0.01 = 1%)."
)
@click.option("--bootstrap", help="Kafka servers: host:port[,host:port] or kafka://host:port.")
@click.option("--connection", help="A kafka:// connection of the project at --project (instead of --bootstrap).")
@click.option("--project", "project_path", default=".", show_default=True, help="Project folder for --connection.")
@click.option("--partitions", type=click.IntRange(min=1), default=3, show_default=True, help="Partitions of a new topic.")
@click.option(
    "--start",
    default=DEFAULT_EVENT_START.isoformat().replace("+00:00", "Z"),
    show_default=True,
    help="Event time of the first record (ISO 8601, or 'now'); later ones follow at the rate (1 ms apart at rate 0).",
)
@click.option(
    "--id-start",
    type=click.IntRange(min=1),
    help="First id. Default: one past the records the topic holds (the sum of its partitions' end offsets), so a "
    "run after another into the same topic repeats no id; --id-start 1 with the same --seed repeats a run's records.",
)
def faker(
    schema: str,
    topic: str,
    rate: str,
    count: int | None,
    seed: int,
    malformed: float,
    bootstrap: str | None,
    connection: str | None,
    project_path: str,
    partitions: int,
    start: str,
    id_start: int | None,
) -> None:
    """Seeded fake users, transactions or products as JSON records (~200 bytes), keyed by their id.

    Ids continue after the records the topic already holds (see --id-start): runs one after another into one
    topic never give two records the same id.

    Progress goes to stderr every 5 s; the final count to stdout. Ctrl-C stops after the records sent so far are
    acknowledged.
    """
    from sluice.streaming.produce import next_id, parse_rate, produce_events

    try:
        per_second = parse_rate(rate)
        first_time = _start_time(start)
        servers = _servers(bootstrap, connection, project_path)
        _ensure_topic(servers, topic, partitions)
        first_id = id_start if id_start is not None else next_id(servers, topic)
    except (ValueError, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        done = produce_events(
            servers,
            topic,
            schema,
            rate=per_second,
            count=count,
            seed=seed,
            malformed=malformed,
            start=first_time,
            first_id=first_id,
            stop=stop,
            progress=lambda n, s: click.echo(f"produced {n:,} records in {s:.0f} s ({n / s:,.0f} records/s)", err=True),
        )
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, previous)
    speed = done.records / done.seconds if done.seconds > 0 else 0.0
    click.echo(
        f"produced {done.records} records ({done.malformed} malformed) to {topic} in {done.seconds:.2f} s "
        f"({speed:,.0f} records/s)"
    )


def _start_time(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--start {text!r} is not an ISO 8601 time such as 2024-01-01T00:00:00Z, nor 'now'") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _servers(bootstrap: str | None, connection: str | None, project_path: str) -> str:
    """``bootstrap.servers`` from --bootstrap or the project's --connection. Raises ConfigError."""
    from sluice.urls import connection_scheme, kafka_servers

    if (bootstrap is None) == (connection is None):
        raise ConfigError("give either --bootstrap host:port or --connection NAME (a kafka:// connection of the project)")
    if bootstrap is not None:
        return kafka_servers(bootstrap if "://" in bootstrap else f"kafka://{bootstrap}")
    from sluice.errors import did_you_mean
    from sluice.project.load import load_project

    project = load_project(project_path)
    spec = project.connections.get(str(connection))
    if spec is None:
        known = ", ".join(sorted(project.connections)) or "none defined"
        hint = did_you_mean(str(connection), project.connections)
        raise ConfigError(f"--connection {connection!r}: no such connection in {project.source_file}.{hint} Known: {known}")
    if connection_scheme(spec.url) != "kafka":
        raise ConfigError(f"--connection {connection!r} is {connection_scheme(spec.url)}://, not a kafka://host:port URL")
    return kafka_servers(spec.url)


def _ensure_topic(servers: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists. Raises ConfigError when Kafka cannot be reached."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from sluice.bus.kafka_common import quiet

    admin: Any = AdminClient(quiet(servers, {"bootstrap.servers": servers}))
    try:
        if topic in admin.list_topics(timeout=10).topics:
            return
        admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)[topic].result(timeout=15)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise ConfigError(f"cannot create topic {topic!r} at {servers}: {exc.args[0].str()}") from None
