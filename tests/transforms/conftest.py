"""The Spark session of the Spark tests: one per test session, ``local[2]``, 4 shuffle partitions, no UI.

Without pyspark or Java the Spark tests are skipped locally and fail under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.project.checks import java_problem
from sluice.transforms.plugins import SparkSettings

SPARK_YAML = """
spark:
  master: local[2]
  conf: {spark.sql.shuffle.partitions: 4, spark.default.parallelism: 2, spark.ui.enabled: false}
"""
"""The ``spark:`` section of the test projects (the session is already started with the same settings)."""

TEST_SETTINGS = SparkSettings(
    master="local[2]", conf={"spark.sql.shuffle.partitions": 4, "spark.default.parallelism": 2, "spark.ui.enabled": False}
)


def spark_problem() -> str | None:
    """Why Spark cannot run here (no pyspark, no Java), or None."""
    return (
        "pyspark is not installed (pip install 'sluice[spark]')"
        if importlib.util.find_spec("pyspark") is None
        else java_problem()
    )


def require_spark() -> None:
    """Skip the test when Spark cannot run here (fail it under ``CI=true``)."""
    why = spark_problem()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Spark tests cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The process's Spark session (``sluice.transforms.spark_session``), started once for every Spark test."""
    require_spark()
    from sluice.transforms.spark_session import spark_session, stop_session

    session = spark_session(TEST_SETTINGS)
    yield session
    stop_session()
