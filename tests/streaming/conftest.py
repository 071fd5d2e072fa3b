"""Fixtures of the streaming tests (streams.py; the Spark session with the Kafka connector: spark_fixtures.py)."""

from __future__ import annotations

from streaming.spark_fixtures import kafka_spark, s3_spark  # noqa: F401
from streaming.streams import topics  # noqa: F401
