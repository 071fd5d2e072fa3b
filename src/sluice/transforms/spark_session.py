"""The Spark session of a worker process: started on the first Spark object, reused by every later one, stopped at exit.

Spark allows one ``SparkContext`` per process, so the first project's ``spark:`` settings (master URL, conf)
are those of the process; each object then runs in its own light session on that context
(``SparkSession.newSession``: its own temporary views and SQL settings, the same executors), so objects
running at once in several executor threads do not see each other's views. Start-up (a JVM, then the
executors) is paid once per process, not per object.

pyspark is an optional dependency (``pip install 'sluice[spark]'``) imported only here and in
:mod:`sluice.transforms.spark_engine`; its types are partial, so sessions and DataFrames are ``Any``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sluice.errors import TerminalError
from sluice.project.checks import java_problem
from sluice.transforms.plugins import SparkSettings

DEFAULT_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",  # timestamps are wall-clock UTC, as in DuckDB
    "spark.sql.timestampType": "TIMESTAMP_NTZ",  # CAST(x AS TIMESTAMP) has no time zone, as in DuckDB
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not INT96: what DuckDB and pyarrow write
    "spark.sql.parquet.compression.codec": "zstd",  # what the lake's own writes use
    "spark.ui.showConsoleProgress": "false",  # no progress bars over Sluice's output
}
"""Sluice's defaults, under the project's ``spark.conf``."""

_LOCK = threading.Lock()
_SESSION: Any = None


class JavaMissing(TerminalError):
    """Spark needs a Java runtime (17 or 21) and none was found: the message says what to install."""


class KafkaConnectorMissing(TerminalError):
    """Spark's Kafka connector jars (for ``engine: spark`` streaming objects) are not installed: run scripts/spark-kafka.sh."""


KAFKA_SCRIPT = "scripts/spark-kafka.sh"
"""The project's script that fetches Spark's Kafka connector from Maven Central (never done at run time)."""


def kafka_jars_folder() -> Path:
    """Where :data:`KAFKA_SCRIPT` puts the connector's jars for the installed PySpark:
    ``$SLUICE_SPARK_JARS_CACHE`` (default ``~/.cache/sluice``) ``/spark-kafka-<pyspark version>/jars``."""
    import pyspark

    root = os.environ.get("SLUICE_SPARK_JARS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"
    )
    return Path(root) / f"spark-kafka-{pyspark.__version__}" / "jars"


def kafka_jars() -> list[str]:
    """The jar paths of Spark's Kafka connector and its dependencies (sorted), for ``spark.jars``.

    Raises :class:`KafkaConnectorMissing` naming :data:`KAFKA_SCRIPT` when they have not been fetched.
    """
    folder = kafka_jars_folder()
    jars = sorted(str(path) for path in folder.glob("*.jar")) if (folder / ".complete").is_file() else []
    if not jars:
        raise KafkaConnectorMissing(
            f"Spark's Kafka connector is not installed in {folder}: run {KAFKA_SCRIPT} (it fetches it from Maven Central)"
        )
    return jars


LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
"""Spark's driver log: errors only (no start-up chatter over Sluice's output); ``spark.driver.extraJavaOptions`` replaces it."""


def conf_of(settings: SparkSettings) -> dict[str, str]:
    """Sluice's :data:`DEFAULT_CONF` (and :data:`LOG_CONFIG`) overlaid with the project's ``spark.conf`` (as Spark strings)."""
    conf = dict(DEFAULT_CONF)
    if LOG_CONFIG.is_file():
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={LOG_CONFIG.as_uri()}"
    for key, value in settings.conf.items():
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return conf


def spark_session(settings: SparkSettings, *, kafka: bool = False) -> Any:
    """The process's ``SparkSession``, started on the first call with ``settings`` (later settings are ignored).

    ``kafka``: the caller reads Kafka (a streaming object), so the session must have Spark's Kafka connector.
    A session starts with the connector's jars in ``spark.jars`` whenever they are installed (they cannot be
    added to a running driver). Raises :class:`JavaMissing` without Java, :class:`KafkaConnectorMissing`
    when ``kafka`` and the jars are not installed (or the running session started without them),
    TerminalError when Spark cannot start (its first line quoted).
    """
    global _SESSION
    with _LOCK:
        if _SESSION is not None and _alive(_SESSION):
            if kafka and not _has_kafka(_SESSION):
                raise KafkaConnectorMissing(
                    f"this process's Spark session started without the Kafka connector: run {KAFKA_SCRIPT}, then restart"
                )
            return _SESSION
        why = java_problem()
        if why:
            raise JavaMissing(why)
        from pyspark.sql import SparkSession

        conf = conf_of(settings)
        try:
            jars = kafka_jars()
        except KafkaConnectorMissing:
            if kafka:
                raise
            jars = []
        if jars:
            conf["spark.jars"] = ",".join([*filter(None, [conf.get("spark.jars", "")]), *jars])
        builder: Any = SparkSession.builder.master(settings.master).appName(settings.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise TerminalError(f"Spark could not start (master {settings.master}): {first}") from exc
        session.sparkContext.setLogLevel("ERROR")
        _quiet_pyspark_loggers()
        if _SESSION is None:
            atexit.register(stop_session)
        _SESSION = session
        return session


def object_session(settings: SparkSettings, *, kafka: bool = False) -> Any:
    """A session of its own for one object (own temporary views), on the process's shared context (``kafka``: see
    :func:`spark_session`)."""
    return spark_session(settings, kafka=kafka).newSession()


def stop_session() -> None:
    """Stop the process's session (at exit; tests may call it). The next :func:`spark_session` starts a new one."""
    global _SESSION
    with _LOCK:
        session, _SESSION = _SESSION, None
    if session is not None:
        session.stop()


def _has_kafka(session: Any) -> bool:
    return "spark-sql-kafka" in session.sparkContext.getConf().get("spark.jars", "")


def _alive(session: Any) -> bool:
    try:
        return session.sparkContext._jsc is not None
    except Exception:
        return False


def _quiet_pyspark_loggers() -> None:
    """pyspark logs every query error with Spark's stack; Sluice reports it once, as a TerminalError."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL + 1)
