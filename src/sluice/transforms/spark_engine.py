"""``engine: spark``: an object's SQL or PySpark function runs on Apache Spark, which reads and writes the lake itself.

- **Parents** are read by Spark from their lake location (:meth:`~sluice.lake.base.Lake.parquet_path`: a
  Parquet file, or a folder of parts; :meth:`~sluice.lake.base.Lake.parquet_files` for a streaming object's
  append-only dataset), each a temporary view named as in DuckDB (:func:`sql_tables`): plain
  ``users``, and ``raw.users`` / ``ingest.users`` for a layer- or stage-qualified name (rewritten to the view
  ``raw__users``, as Spark has no schemas of temporary views).
- **SQL** is DuckDB's dialect, the same text a DuckDB object runs; sqlglot translates it to Spark SQL
  (:func:`spark_sql`). Timestamp results are written without a time zone (wall-clock UTC), like DuckDB's.
- **pyspark: module:function** gets one DataFrame per parent, as keywords named like a ``python:`` function's
  arguments (:func:`~sluice.transforms.engines.python_arguments`), and returns a DataFrame.
- **Output**: Spark writes Parquet parts into the lake's staging place (:meth:`Lake.stage`), committed by the
  runtime: no row goes through the Sluice process.

Spark's errors become TerminalError naming the object and quoting the first line of Spark's message; a
failed Spark job (Py4JJavaError: an executor lost, out of memory) is a TransientError, retried.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa
import sqlglot
from sqlglot import exp

from sluice.errors import SluiceError, TerminalError, TransientError, did_you_mean
from sluice.lake.base import Lake, StagedOutput
from sluice.project.model import ObjectSpec
from sluice.transforms.engines import Engine, python_arguments, sql_tables


class SparkEngine(Engine):
    """Runs ``sql:`` (DuckDB dialect, translated) and ``pyspark:`` objects on the process's Spark session."""

    writes_lake: ClassVar[bool] = True

    def frame(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> Any:
        """``obj``'s output as a lazy pyspark DataFrame over its parents (nothing computed yet)."""
        from sluice.transforms.spark_session import object_session

        session = object_session(self.project.spark)
        with spark_errors(object_label, list(sql_tables(self.project, obj, inputs))):
            if obj.pyspark is not None:
                frames = {
                    arg: read(session, lake_input(self.lake, loc))
                    for arg, loc in python_arguments(self.project, obj, inputs).items()
                }
                return call_function(obj.pyspark, self.project.root, frames, object_label=object_label)
            assert obj.sql is not None
            tables = sql_tables(self.project, obj, inputs)
            text, views = spark_sql(obj.sql, list(tables))
            by_location: dict[str, Any] = {}  # one DataFrame per parent, however many of its names the SQL uses
            for view, name in views.items():
                location = tables[name]
                if location not in by_location:
                    by_location[location] = read(session, lake_input(self.lake, location))
                by_location[location].createOrReplaceTempView(view)
            return session.sql(text)

    def write(self, obj: ObjectSpec, inputs: Mapping[str, str], staged: StagedOutput, *, object_label: str) -> None:
        """Compute ``obj`` and have Spark write it as Parquet parts into ``staged.uri`` (committed by the caller)."""
        frame = self.frame(obj, inputs, object_label=object_label)
        with spark_errors(object_label, []):
            without_time_zone(frame).write.mode("overwrite").parquet(staged.uri)

    def run(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> pa.RecordBatchReader:
        """The output collected into this process as Arrow (for callers that need batches; the runtime uses :meth:`write`)."""
        frame = self.frame(obj, inputs, object_label=object_label)
        with spark_errors(object_label, []):
            table: pa.Table = without_time_zone(frame).toArrow()
        return table.to_reader()

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """For ``pyspark:``, the project modules the function's module imports; for SQL, nothing."""
        if obj.pyspark is None:
            return ""
        from sluice.transforms.python import input_fingerprint

        return input_fingerprint(obj.pyspark, self.project.root)


def spark_sql(sql: str, tables: list[str]) -> tuple[str, dict[str, str]]:
    """``sql`` (DuckDB's dialect) as Spark SQL, and the temporary views it reads: view name -> input table name.

    A qualified input (``raw.users``) is read from the view ``raw__users``; a plain one keeps its name. Only
    the inputs the SQL names get a view: each view costs Spark a read of the files' footers (a job of its
    own), so an object is not charged for the parents' other names. Tables that are not inputs are left for
    Spark to report. Raises sqlglot's ParseError.

    >>> spark_sql("select date_trunc('month', d) m from raw.users", ["raw.users", "users"])
    ("SELECT DATE_TRUNC('MONTH', d) AS m FROM raw__users", {'raw__users': 'raw.users'})
    """
    by_lower = {name.lower(): name for name in tables}
    views: dict[str, str] = {}
    tree = sqlglot.parse_one(sql, read="duckdb")
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier) or table.catalog:
            continue  # CTEs and table functions stay as they are
        name = by_lower.get(f"{table.db}.{table.name}".lower() if table.db else table.name.lower())
        if name is None:
            continue  # not an input (a CTE's name, or a table Spark reports as missing)
        views[name.replace(".", "__")] = name
        if table.db:  # plain names are views of the same name
            table.replace(exp.Table(this=exp.to_identifier(name.replace(".", "__")), alias=table.args.get("alias")))
    return tree.sql(dialect="spark"), views


PARTITIONED_GLOB = "/**/*.parquet"
"""How :meth:`Lake.parquet_path` ends for a partitioned output: ``<output>/v=<version>/**/*.parquet``."""


def lake_input(lake: Lake, location: str) -> str | list[str]:
    """What Spark reads for ``location``: its Parquet path or glob, or for an append-only dataset (a streaming
    object's, which no glob covers without its uncommitted files) the list of its committed files."""
    try:
        return lake.parquet_path(location)
    except TerminalError:
        return lake.parquet_files(location)  # raises its own error when the output is missing


def read(session: Any, path: str | list[str]) -> Any:
    """A DataFrame over a lake Parquet path or glob (``/abs/raw/users.parquet``, ``/abs/.x.parts-1/*.parquet``), or a
    list of files (an append-only dataset's committed micro-batches).

    A partitioned output's glob is read as its current version's folder, Spark discovering the Hive-style
    partition columns (``dt=2026-11-30/``) from it: that folder holds exactly the committed files.
    """
    if isinstance(path, list):
        return session.read.parquet(*(f"file://{p}" if p.startswith("/") else p for p in path))
    if path.endswith(PARTITIONED_GLOB):
        folder = path.removesuffix(PARTITIONED_GLOB)
        folder = f"file://{folder}" if folder.startswith("/") else folder
        return session.read.option("basePath", folder).parquet(folder)
    return session.read.parquet(f"file://{path}" if path.startswith("/") else path)


def without_time_zone(frame: Any) -> Any:
    """``frame`` with its time-zone-aware timestamp columns as wall-clock (NTZ) ones, as DuckDB writes them."""
    from pyspark.sql.types import TimestampNTZType, TimestampType

    timestamps = [field.name for field in frame.schema.fields if isinstance(field.dataType, TimestampType)]
    if not timestamps:
        return frame
    return frame.withColumns({name: frame[name].cast(TimestampNTZType()) for name in timestamps})


def call_function(ref: str, root: Any, frames: Mapping[str, Any], *, object_label: str) -> Any:
    """Call ``module:function`` with one DataFrame per parent and check that it returns a DataFrame."""
    from pyspark.sql import DataFrame

    from sluice.transforms.python import load_function

    function = load_function(ref, root, object_label=object_label)
    try:
        inspect.signature(function).bind(**frames)
    except TypeError as exc:
        parents = ", ".join(frames) or "none"
        raise TerminalError(
            f"{object_label}: {ref} cannot be called with the parents ({parents}): {exc}; "
            "name its parameters after the parents, or take **frames"
        ) from None
    except ValueError:
        pass
    result = function(**frames)
    if not isinstance(result, DataFrame):
        raise TerminalError(
            f"{object_label}: {ref} returned a {type(result).__name__}; a pyspark function must return a DataFrame"
        )
    return result


class spark_errors:
    """Spark's errors as Sluice's: PySparkException (analysis, parse...) -> TerminalError; a failed job -> TransientError."""

    def __init__(self, object_label: str, tables: list[str]) -> None:
        self.object_label = object_label
        self.tables = tables

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, SluiceError) or not isinstance(exc, Exception):
            return
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException
        from sqlglot.errors import ParseError

        if isinstance(exc, ParseError):
            raise TerminalError(f"{self.object_label}: SQL does not parse (DuckDB dialect): {first_line(exc)}") from exc
        if isinstance(exc, PySparkException):
            message = first_line(exc)
            condition = exc.getCondition() if hasattr(exc, "getCondition") else None
            if condition == "TABLE_OR_VIEW_NOT_FOUND" and self.tables:
                names = [name.replace(".", "__") for name in self.tables]
                missing = message.split("`")[1] if message.count("`") >= 2 else ""
                message += f"{did_you_mean(missing, names)} Available input tables: {', '.join(self.tables)}"
            raise TerminalError(f"{self.object_label}: Spark failed: {message}") from exc
        if isinstance(exc, Py4JJavaError):
            raise TransientError(f"{self.object_label}: Spark job failed: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an error (py4j's "An error occurred while calling o42.parquet." skipped)."""
    for line in str(exc).splitlines():
        text = line.strip().removeprefix(": ").strip()
        if text and not text.startswith("An error occurred while calling"):
            return text
    return type(exc).__name__
