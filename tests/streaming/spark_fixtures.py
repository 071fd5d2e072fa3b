"""The Spark session of the Spark streaming tests, with Spark's Kafka connector and Hadoop's S3A (topics and
records: streams.py).

``kafka_spark`` runs ``scripts/spark-kafka.sh`` and ``scripts/spark-s3.sh`` (Maven, once: the jars are cached)
and (re)starts the process's Spark session with the jars they installed; without pyspark, Java or Maven the
tests are skipped, and fail under CI=true. ``s3_spark`` is the same session, for tests that need S3A (its
script having failed skips them, or fails them under CI=true).
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
_S3_PROBLEM: list[str] = []


def _script(name: str) -> str | None:
    """Run ``scripts/<name>``; None when it succeeded, else the end of what it said."""
    done = subprocess.run([str(REPO / "scripts" / name)], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"scripts/{name} failed: {done.stderr.strip()[-800:]}"


@pytest.fixture(scope="session")
def kafka_spark() -> Iterator[Any]:
    """The process's Spark session, with the Kafka connector's jars (and S3A's when they could be installed)."""
    why = spark_problem()
    if why:
        unavailable(f"the Spark streaming tests cannot run: {why}")
    why = _script("spark-kafka.sh")
    if why:
        unavailable(why)
    s3_problem = _script("spark-s3.sh")
    if s3_problem:
        _S3_PROBLEM.append(s3_problem)
    from sluice.transforms import spark_session as sessions

    session = sessions.spark_session(TEST_SETTINGS)
    if not sessions._has_kafka(session) or (not s3_problem and not sessions._has_s3(session)):
        sessions.stop_session()  # started by an earlier test before the jars were fetched
        session = sessions.spark_session(TEST_SETTINGS, kafka=True, s3=not s3_problem)
    yield session
    sessions.stop_session()


@pytest.fixture
def s3_spark(kafka_spark: Any) -> Any:
    """:func:`kafka_spark`, for a test that also writes through S3A."""
    if _S3_PROBLEM:
        unavailable(_S3_PROBLEM[0])
    return kafka_spark
