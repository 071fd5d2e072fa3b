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


def spark_session(settings: SparkSettings) -> Any:
    """The process's ``SparkSession``, started on the first call with ``settings`` (later settings are ignored).

    Raises :class:`JavaMissing` without Java, TerminalError when Spark cannot start (its first line quoted).
    """
    global _SESSION
    with _LOCK:
        if _SESSION is not None and _alive(_SESSION):
            return _SESSION
        why = java_problem()
        if why:
            raise JavaMissing(why)
        from pyspark.sql import SparkSession

        builder: Any = SparkSession.builder.master(settings.master).appName(settings.app_name)
        for key, value in conf_of(settings).items():
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


def object_session(settings: SparkSettings) -> Any:
    """A session of its own for one object (own temporary views), on the process's shared context."""
    return spark_session(settings).newSession()


def stop_session() -> None:
    """Stop the process's session (at exit; tests may call it). The next :func:`spark_session` starts a new one."""
    global _SESSION
    with _LOCK:
        session, _SESSION = _SESSION, None
    if session is not None:
        session.stop()


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
