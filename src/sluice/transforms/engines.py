"""Transform engines: what turns an object's parents into its output (SQL on DuckDB, Python on Arrow, Spark).

An engine is a plugin of kind ``engine`` (:mod:`sluice.transforms.plugins`); the object's ``sql:`` or
``python:`` key names which one runs it, unless its ``engine:`` (or the project's) names another
(``engine: spark``, :mod:`sluice.transforms.spark_engine`; ``ObjectSpec.engine``). Each engine
also says what, besides its parents, the output depends on (:meth:`Engine.input_fingerprint`), so
planning can tell a fresh object from a stale one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, cast

import pyarrow as pa

from sluice.lake.base import Lake, StagedOutput
from sluice.plugins import registry
from sluice.project.model import ObjectSpec, Project, layer_of, parent_keys


class Engine(ABC):
    """Runs the objects of one project whose work it does. Thread-safe: it holds no per-object state.

    An engine either returns the output as Arrow batches (:meth:`run`), which the runtime streams into the
    lake, or, when :attr:`writes_lake` is True, writes Parquet parts into a staging place of the lake
    itself (:meth:`write`), which the runtime then commits: the data never goes through the Sluice process.
    """

    writes_lake: ClassVar[bool] = False
    """True when the runtime calls :meth:`write` instead of :meth:`run` (Spark)."""

    def __init__(self, project: Project, lake: Lake) -> None:
        self.project = project
        self.lake = lake

    @abstractmethod
    def run(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> pa.RecordBatchReader:
        """``obj``'s output from ``inputs`` (parent name -> lake location). Raises TerminalError for user mistakes."""

    def write(self, obj: ObjectSpec, inputs: Mapping[str, str], staged: StagedOutput, *, object_label: str) -> None:
        """Write ``obj``'s output as Parquet parts into ``staged.uri`` (engines with :attr:`writes_lake`); the
        caller commits or discards ``staged``. Raises TerminalError for user mistakes."""
        raise NotImplementedError(f"{type(self).__name__} returns batches (run); it does not write the lake itself")

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """What the output depends on besides the object's definition and its parents ("" for nothing, None: unknown)."""
        return ""


class DuckdbSqlEngine(Engine):
    """``sql:``: the query runs in an in-memory DuckDB over the parents' Parquet files (local paths), or over
    pyarrow datasets the lake hands over (S3, partitioned outputs), so DuckDB needs no httpfs extension."""

    def run(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> pa.RecordBatchReader:
        from sluice.transforms.sql import run_sql

        assert obj.sql is not None
        tables = {name: self.lake.duckdb_input(location) for name, location in sql_tables(self.project, obj, inputs).items()}
        return run_sql(obj.sql, tables, object_label=object_label)


class PythonEngine(Engine):
    """``python: module:function``: the function gets one Arrow table per parent and returns a table."""

    def run(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> pa.RecordBatchReader:
        from sluice.transforms.python import run_python

        assert obj.python is not None
        arguments = python_arguments(self.project, obj, inputs)
        tables = {name: self.lake.read(location).read_all() for name, location in arguments.items()}
        return run_python(obj.python, self.project.root, tables, object_label=object_label).to_reader()

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """The project modules the function's module imports (see :func:`sluice.transforms.python.input_fingerprint`)."""
        from sluice.transforms.python import input_fingerprint

        assert obj.python is not None
        return input_fingerprint(obj.python, self.project.root)


def sql_tables(project: Project, obj: ObjectSpec, inputs: Mapping[str, str]) -> dict[str, str]:
    """The tables ``obj``'s SQL sees: table name -> lake location, for each parent in ``inputs``.

    Each parent is ``<layer>.<name>`` and ``<stage>.<name>`` (a DuckDB schema per layer and per stage),
    and also plain ``<name>`` when no other parent of ``obj`` has that name. A qualified name two
    parents would share is left out (it names neither).
    """
    found: dict[str, set[str]] = {}
    for parent_id, key in parent_keys(project, obj).items():
        location = inputs.get(key)
        if location is None:
            continue
        parent = project.objects[parent_id]
        for name in (parent.name, f"{layer_of(project, parent)}.{parent.name}", f"{parent.stage}.{parent.name}"):
            found.setdefault(name, set()).add(location)
    return {name: next(iter(locations)) for name, locations in found.items() if len(locations) == 1}


def python_arguments(project: Project, obj: ObjectSpec, inputs: Mapping[str, str]) -> dict[str, str]:
    """The keyword arguments ``obj``'s function gets: argument -> lake location, for each parent in ``inputs``.

    A parent is its name, or ``<layer>_<name>`` (``raw_customers``) when another parent has the same name.
    """
    return {key.replace(".", "_"): inputs[key] for key in parent_keys(project, obj).values() if key in inputs}


def open_engine(name: str, project: Project, lake: Lake) -> Engine:
    """The engine plugin ``name`` (``sql``, ``python``, ``spark``) for ``project``. Raises PluginError or MissingExtra."""
    cls = cast("type[Engine]", registry().get("engine", name).load())
    return cls(project, lake)
