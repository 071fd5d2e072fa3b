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
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sluice.errors import TerminalError
from sluice.project.checks import java_problem
from sluice.transforms.plugins import SparkSettings

log = logging.getLogger("sluice.spark")

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


class S3ConnectorMissing(TerminalError):
    """Hadoop's S3A jars (``engine: spark`` streaming objects on an S3 lake) are not installed: run scripts/spark-s3.sh."""


KAFKA_SCRIPT = "scripts/spark-kafka.sh"
"""The project's script that fetches Spark's Kafka connector from Maven Central (never done at run time)."""
S3_SCRIPT = "scripts/spark-s3.sh"
"""The project's script that fetches hadoop-aws and the AWS SDK bundle from Maven Central (never done at run time)."""


def jars_cache() -> Path:
    """Where the scripts put the jars they fetch: ``$SLUICE_SPARK_JARS_CACHE``, else ``$XDG_CACHE_HOME/sluice``,
    else ``~/.cache/sluice``."""
    root = os.environ.get("SLUICE_SPARK_JARS_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"


def kafka_jars_folder() -> Path:
    """Where :data:`KAFKA_SCRIPT` puts the connector's jars for the installed PySpark:
    :func:`jars_cache` ``/spark-kafka-<pyspark version>/jars``."""
    import pyspark

    return jars_cache() / f"spark-kafka-{pyspark.__version__}" / "jars"


def hadoop_version() -> str:
    """The Hadoop version PySpark bundles (from its ``hadoop-client-api-<version>.jar``; ``unknown`` when it has none)."""
    import pyspark

    found = sorted(Path(pyspark.__file__).parent.joinpath("jars").glob("hadoop-client-api-*.jar"))
    return found[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar") if found else "unknown"


def s3_jars_folder() -> Path:
    """Where :data:`S3_SCRIPT` puts hadoop-aws and its AWS SDK for PySpark's Hadoop:
    :func:`jars_cache` ``/spark-s3-<hadoop version>/jars``."""
    return jars_cache() / f"spark-s3-{hadoop_version()}" / "jars"


def kafka_jars() -> list[str]:
    """The jar paths of Spark's Kafka connector and its dependencies (sorted), for ``spark.jars``.

    Raises :class:`KafkaConnectorMissing` naming :data:`KAFKA_SCRIPT` when they have not been fetched.
    """
    return _installed(kafka_jars_folder(), "Spark's Kafka connector", KAFKA_SCRIPT, KafkaConnectorMissing)


def s3_jars() -> list[str]:
    """The jar paths of hadoop-aws and its dependencies (sorted), for the class path.

    Raises :class:`S3ConnectorMissing` naming :data:`S3_SCRIPT` when they have not been fetched.
    """
    return _installed(s3_jars_folder(), "Hadoop's S3A file system (hadoop-aws)", S3_SCRIPT, S3ConnectorMissing)


def _installed(folder: Path, what: str, script: str, missing: type[TerminalError]) -> list[str]:
    """The jars of ``folder`` once its script completed it (``.complete``); else ``missing`` naming ``script``."""
    jars = sorted(str(path) for path in folder.glob("*.jar")) if (folder / ".complete").is_file() else []
    if not jars:
        raise missing(f"{what} is not installed in {folder}: run {script} (it fetches it from Maven Central)")
    return jars


LOG_CONFIG = Path(__file__).with_name("spark-log4j2.properties")
"""Spark's driver log: errors only, no start-up lines over Sluice's output (see :func:`spark_logs_quiet`)."""

_OWN_LOG_CONFIG = re.compile(r"-Dlog4j2?\.configurationFile=")
"""A Java option naming a log4j2 file (log4j2 reads either property)."""


def spark_logs_quiet(settings: SparkSettings) -> bool:
    """Whether a session starting now keeps Spark's own log to errors (:data:`LOG_CONFIG`, ``sc.setLogLevel("ERROR")``):
    yes unless Sluice logs at debug level (``--log-level debug``: Spark's default log, start-up lines and warnings
    included) or the project's ``spark.driver.extraJavaOptions`` name a log4j2 file of their own."""
    options = str(settings.conf.get("spark.driver.extraJavaOptions", ""))
    return not log.isEnabledFor(logging.DEBUG) and not _OWN_LOG_CONFIG.search(options)


def conf_of(settings: SparkSettings, *, quiet: bool = True) -> dict[str, str]:
    """Sluice's :data:`DEFAULT_CONF` overlaid with the project's ``spark.conf`` (as Spark strings); when ``quiet``,
    :data:`LOG_CONFIG` ahead of the project's ``spark.driver.extraJavaOptions``."""
    conf = dict(DEFAULT_CONF)
    for key, value in settings.conf.items():
        conf[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if quiet and LOG_CONFIG.is_file():
        options = [f"-Dlog4j.configurationFile={LOG_CONFIG.as_uri()}", conf.get("spark.driver.extraJavaOptions", "")]
        conf["spark.driver.extraJavaOptions"] = " ".join(filter(None, options))
    return conf


def spark_session(settings: SparkSettings, *, kafka: bool = False, s3: bool = False) -> Any:
    """The process's ``SparkSession``, started on the first call with ``settings`` (later settings are ignored).

    ``kafka``: the caller reads Kafka (a streaming object), so the session must have Spark's Kafka connector;
    ``s3``: the caller writes ``s3a://`` paths (a streaming object on an S3 lake), so it must have hadoop-aws.
    A session starts with whichever of those jars are installed (they cannot be added to a running driver):
    the Kafka connector in ``spark.jars``; hadoop-aws and its 690 MB AWS SDK bundle on the driver's class
    path (``spark.driver.extraClassPath``) for a ``local`` master, since ``spark.jars`` would copy them into
    every session's temporary folder, else (or when the process's JVM already runs: a restarted session) in
    ``spark.jars``. Raises :class:`JavaMissing` without Java,
    :class:`KafkaConnectorMissing` / :class:`S3ConnectorMissing` when asked for jars that are not installed (or
    that the running session started without), TerminalError when Spark cannot start (its first line quoted).
    """
    global _SESSION
    with _LOCK:
        if _SESSION is not None and _alive(_SESSION):
            if kafka and not _has_kafka(_SESSION):
                raise KafkaConnectorMissing(
                    f"this process's Spark session started without the Kafka connector: run {KAFKA_SCRIPT}, then restart"
                )
            if s3 and not _has_s3(_SESSION):
                raise S3ConnectorMissing(
                    f"this process's Spark session started without hadoop-aws (s3a): run {S3_SCRIPT}, then restart"
                )
            return _SESSION
        why = java_problem()
        if why:
            raise JavaMissing(why)
        from pyspark.sql import SparkSession

        quiet = spark_logs_quiet(settings)
        conf = conf_of(settings, quiet=quiet)
        jars = _optional(kafka_jars, kafka)
        extra = _optional(s3_jars, s3)
        if extra and (not settings.master.startswith("local") or _jvm_running()):
            jars, extra = [*jars, *extra], []
        if jars:
            conf["spark.jars"] = ",".join([*filter(None, [conf.get("spark.jars", "")]), *jars])
        if extra:
            conf["spark.driver.extraClassPath"] = os.pathsep.join(
                [*filter(None, [conf.get("spark.driver.extraClassPath")]), *extra]
            )
        builder: Any = SparkSession.builder.master(settings.master).appName(settings.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        # Its start-up (a JVM, half a minute on a laptop the first time) is otherwise silent: say so, at info level (it
        # is not a problem: --log-level info shows it, and a warning per start would page whoever watches warnings).
        log.info("starting Spark (master %s) ...", settings.master)
        began = time.monotonic()
        try:
            session = builder.getOrCreate()
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise TerminalError(f"Spark could not start (master {settings.master}): {first}") from exc
        if quiet:
            session.sparkContext.setLogLevel("ERROR")
        _quiet_pyspark_loggers()
        log.info("Spark ready in %.1f s (master %s)", time.monotonic() - began, settings.master)
        if _SESSION is None:
            atexit.register(stop_session)
        _SESSION = session
        return session


def object_session(settings: SparkSettings, *, kafka: bool = False, s3: bool = False) -> Any:
    """A session of its own for one object (own temporary views), on the process's shared context (``kafka``,
    ``s3``: see :func:`spark_session`)."""
    return spark_session(settings, kafka=kafka, s3=s3).newSession()


def stop_session() -> None:
    """Stop the process's session (at exit; tests may call it). The next :func:`spark_session` starts a new one."""
    global _SESSION
    with _LOCK:
        session, _SESSION = _SESSION, None
    if session is not None:
        session.stop()


def _optional(jars: Callable[[], list[str]], needed: bool) -> list[str]:
    """``jars()``, or none when they are not installed and not ``needed`` (then the error is raised)."""
    try:
        return jars()
    except (KafkaConnectorMissing, S3ConnectorMissing):
        if needed:
            raise
        return []


def _jvm_running() -> bool:
    """True when this process already launched Spark's JVM (a stopped session's): its class path is fixed."""
    from pyspark import SparkContext

    return SparkContext._gateway is not None


def _has_kafka(session: Any) -> bool:
    return "spark-sql-kafka" in session.sparkContext.getConf().get("spark.jars", "")


def _has_s3(session: Any) -> bool:
    conf = session.sparkContext.getConf()
    return any("hadoop-aws" in conf.get(key, "") for key in ("spark.jars", "spark.driver.extraClassPath"))


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
