"""Fixtures of the Spark streaming tests: a Spark session with Spark's Kafka connector, and topics with records.

``kafka_spark`` runs ``scripts/spark-kafka.sh`` (Maven, once: the jars are cached) and (re)starts the process's
Spark session with the connector; without pyspark, Java or Maven the tests are skipped, and fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from servers_fixtures import unavailable
from sluice.urls import kafka_servers
from sluice.project.checks import java_problem
from transforms.conftest import TEST_SETTINGS

REPO = Path(__file__).resolve().parents[2]

Produce = Callable[[str, Sequence[dict[str, Any]]], None]


@pytest.fixture(scope="session")
def kafka_spark() -> Iterator[Any]:
    """The process's Spark session, with the Kafka connector's jars in ``spark.jars``."""
    why = "pyspark is not installed (pip install 'sluice[spark]')" if importlib.util.find_spec("pyspark") is None else java_problem()
    if why:
        unavailable(f"the Spark streaming tests cannot run: {why}")
    done = subprocess.run([str(REPO / "scripts" / "spark-kafka.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"scripts/spark-kafka.sh failed: {done.stderr.strip()[-800:]}")
    from sluice.transforms import spark_session as sessions

    session = sessions.spark_session(TEST_SETTINGS)
    if not sessions._has_kafka(session):  # started by an earlier test before the jars were fetched
        sessions.stop_session()
        session = sessions.spark_session(TEST_SETTINGS, kafka=True)
    yield session
    sessions.stop_session()


@pytest.fixture
def servers(kafka_url: str) -> str:
    return kafka_servers(kafka_url)


@pytest.fixture
def new_topic(servers: str) -> Iterator[Callable[[int], str]]:
    """Make a uniquely named topic with N partitions; deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": servers})
    made: list[str] = []

    def make(partitions: int = 1) -> str:
        topic = f"sluice_test_{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
        made.append(topic)
        return topic

    yield make
    if made:
        for future in admin.delete_topics(made).values():
            future.exception(30)


@pytest.fixture
def produce(servers: str) -> Produce:
    """Produce records (dicts) as JSON values, keyed ``k<id>`` when they have an ``id``, spread over partitions by key."""
    from confluent_kafka import Producer

    def send(topic: str, records: Sequence[dict[str, Any]]) -> None:
        producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
        for record in records:
            key = f"k{record['id']}".encode() if "id" in record else None
            producer.produce(topic, json.dumps(record).encode(), key=key, headers=[("source", b"test")])
        assert producer.flush(30) == 0

    return send
