"""The Spark session of the Spark streaming tests, with Spark's Kafka connector (topics and records: streams.py).

``kafka_spark`` runs ``scripts/spark-kafka.sh`` (Maven, once: the jars are cached) and (re)starts the process's
Spark session with the connector; without pyspark, Java or Maven the tests are skipped, and fail under CI=true.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers_fixtures import unavailable
from transforms.conftest import TEST_SETTINGS, spark_problem

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kafka_spark() -> Iterator[Any]:
    """The process's Spark session, with the Kafka connector's jars in ``spark.jars``."""
    why = spark_problem()
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
