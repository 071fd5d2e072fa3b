"""The process's Spark session: its start says so (a JVM takes half a minute the first time); its log is quiet unless asked."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from helpers import logged
from sluice.transforms import spark_session as module
from sluice.transforms.plugins import SparkSettings

pytest.importorskip("pyspark")


class _Builder:
    """Stands for ``SparkSession.builder``: a fake session (no JVM in this test)."""

    def master(self, _: str) -> _Builder:
        return self

    def appName(self, _: str) -> _Builder:
        return self

    def config(self, _key: str, _value: str) -> _Builder:
        return self

    def getOrCreate(self) -> Any:
        class Context:
            _jsc = object()

            def setLogLevel(self, _: str) -> None:
                pass

        class Session:
            sparkContext = Context()

        return Session()


def test_starting_spark_says_so_and_how_long_it_took(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import pyspark.sql

    monkeypatch.setattr(module, "_SESSION", None)  # not the shared session another test may have started
    monkeypatch.setattr(module, "java_problem", lambda: None)
    monkeypatch.setattr(module, "kafka_jars", lambda: [])
    monkeypatch.setattr(module.atexit, "register", lambda _: None)
    monkeypatch.setattr(pyspark.sql.SparkSession, "builder", _Builder())
    with caplog.at_level(logging.INFO, logger="sluice.spark"):
        session = module.spark_session(SparkSettings(master="local[2]"))
        assert module.spark_session(SparkSettings(master="local[2]")) is session  # started once, said once
    records = [r for r in caplog.records if r.name == "sluice.spark"]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 2, lines
    assert [r.levelname for r in records] == ["INFO", "INFO"]  # not a problem: never a warning
    assert lines[0] == "starting Spark (master local[2]) ..."
    assert lines[1].startswith("Spark ready in ") and lines[1].endswith(" s (master local[2])")


def test_spark_logs_errors_only_unless_debug_or_a_log4j2_file_of_the_projects() -> None:
    ours = f"-Dlog4j.configurationFile={module.LOG_CONFIG.as_uri()}"
    plain = SparkSettings(master="local[1]")
    tuned = SparkSettings(master="local[1]", conf={"spark.driver.extraJavaOptions": "-Xss4m"})
    own = SparkSettings(master="local[1]", conf={"spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=/etc/log4j2.xml"})
    with logged("sluice.spark", logging.INFO):
        assert module.spark_logs_quiet(plain) and module.spark_logs_quiet(tuned)
        assert not module.spark_logs_quiet(own)
    with logged("sluice.spark", logging.DEBUG):  # --log-level debug: Spark's own log
        assert not module.spark_logs_quiet(plain)
    assert module.conf_of(plain)["spark.driver.extraJavaOptions"] == ours
    assert module.conf_of(tuned)["spark.driver.extraJavaOptions"] == f"{ours} -Xss4m"  # the project's options kept
    assert module.conf_of(own, quiet=False)["spark.driver.extraJavaOptions"] == "-Dlog4j2.configurationFile=/etc/log4j2.xml"
    assert "spark.driver.extraJavaOptions" not in module.conf_of(plain, quiet=False)
