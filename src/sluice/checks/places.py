"""Where an object's checks run, and the connection each place gives them.

The rule (docs/checks.md): an output in PostgreSQL (a ``warehouse`` model's table, or a destination on a
PostgreSQL connection) is checked **inside PostgreSQL**; else an ``engine: spark`` object's lake output on
**Spark** (the worker's session); else the lake output with **DuckDB** (a view over its committed Parquet).
Each place runs the compiled queries and returns only their (at most ``sample``) rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sluice.errors import TerminalError, TransientError
from sluice.lake.base import Lake
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.urls import connection_scheme, libpq_url

PlaceKind = Literal["duckdb", "postgres", "spark"]
Fetch = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
"""Runs one query on a connection held by someone else: its column names and rows (a PostgreSQL load's transaction,
``PostgresDestination.fetch``)."""
THIS_VIEW = "sluice_this"


@dataclass(frozen=True, slots=True)
class LoadScope:
    """The rows of the load being checked, for checks with ``rows: load`` (docs/checks.md).

    ``relation``: a SQL name, in the place, of a relation holding exactly them (a PostgreSQL load's staged rows); None
    when the checked output itself holds nothing but them (a lake output this run wrote whole, a ``replace`` load).
    ``rows``: how many (None: counted when the checks run).
    """

    relation: str | None = None
    rows: int | None = None


@dataclass(frozen=True, slots=True)
class Where:
    """Where ``obj``'s output is checked: ``place``, and for ``postgres`` the connection and table."""

    place: PlaceKind
    connection: str | None = None
    table: str | None = None


def postgres_table(project: Project, obj: ObjectSpec) -> tuple[str, str] | None:
    """(connection, table) of ``obj``'s output in PostgreSQL, or None."""
    model = obj.model
    if model is not None and model.engine == "warehouse" and model.connection and model.target:
        return model.connection, model.target
    spec = obj.destination
    connection = project.connections.get(spec.connection) if spec is not None else None
    if spec is not None and connection is not None and connection_scheme(connection.url) == "postgresql":
        return spec.connection, spec.table
    return None


def where(project: Project, obj: ObjectSpec) -> Where | str:
    """Where ``obj``'s checks run, or why they cannot (an output neither in PostgreSQL nor in the lake)."""
    table = postgres_table(project, obj)
    if table is not None:
        return Where("postgres", *table)
    if not obj.lake or (obj.model is not None and obj.model.engine not in ("duckdb", "spark")):
        return "its output is neither in PostgreSQL nor in the lake; keep a lake copy or load a PostgreSQL destination"
    return Where("spark" if obj.engine == "spark" else "duckdb")


def find_object(project: Project, target: int | str) -> ObjectSpec | None:
    """The object ``target`` names: an id, or a name (unique names first)."""
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return project.objects.get(int(target))
    return next((o for o in project.objects.values() if o.name == target), None)


@dataclass(frozen=True, slots=True)
class _Column:
    name: str


class _Fetched:
    """A query's result as a psycopg cursor gives it: ``description`` (items with ``name``), ``fetchone``, ``fetchall``."""

    def __init__(self, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [_Column(name) for name in names] or None
        self._rows = iter(rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)


class InLoad:
    """The connection a check gets inside a load's transaction: the part of a psycopg connection checks use
    (``execute(sql)`` -> ``description``, ``fetchone``, ``fetchall``; no parameters), over a :data:`Fetch`."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch

    def execute(self, sql: str, params: object = None) -> _Fetched:
        if params:
            raise TerminalError("a check inside a load's transaction runs its SQL without parameters; write the values in")
        return _Fetched(*self._fetch(sql))

    def close(self) -> None:
        """The load's transaction is not the check's to close."""


@dataclass
class Place:
    """An open place for one object's checks: ``this`` names its output in SQL; :meth:`query` runs one query."""

    project: Project
    lake: Lake
    obj: ObjectSpec
    where: Where
    location: str | None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    connection: Any = None
    this: str = THIS_VIEW
    run_outputs: Mapping[int, str] = field(default_factory=dict)
    """Lake locations of this run's parents (object id -> location): what :meth:`ref` reads for one of them, so a
    date's check reads that date's parent output (:mod:`sluice.lake.dated`) rather than the plain one."""
    fetch: Fetch | None = None
    """For ``postgres``: run the queries here instead of on a connection of the place's own: inside the transaction of
    the load being written, which commits only if the ``error`` checks pass (docs/checks.md)."""
    load: LoadScope | None = None
    """The rows of the load being checked (checks with ``rows: load`` look at them only); None: no load, or none
    that can be told apart from the rest of the output (those checks then cover the whole output)."""
    _refs: dict[int, str] = field(default_factory=dict)

    @property
    def place(self) -> str:
        return self.where.place

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def keys(self) -> tuple[str, ...]:
        if self.obj.destination is not None and self.obj.destination.key:
            return tuple(self.obj.destination.key)
        if self.obj.model is not None:
            return self.obj.model.unique_key
        return ()

    def open(self) -> Place:
        """Connect and name the output; raises TransientError (PostgreSQL unreachable) or TerminalError."""
        if self.where.place == "postgres":
            self._open_postgres()
        else:
            layer = layer_of(self.project, self.obj)
            location = self.location or self.lake.current_location(layer, self.obj.name)
            if location is None:
                from sluice.lake.dated import candidate_name

                failed = self.lake.current_location(layer, candidate_name(self.obj.name))
                if failed is not None:
                    raise TerminalError(
                        f"it has no current output: the one its last run wrote failed an error check and is kept at "
                        f"{failed}, not made current; fix it and run the object again"
                    )
                raise TerminalError("its output is not in the lake yet; run it first")
            self._open_lake(location)
        return self

    def _open_postgres(self) -> None:
        import psycopg

        from sluice.destinations.sql import TableName

        assert self.where.connection is not None and self.where.table is not None
        if self.fetch is not None:  # the load's own transaction: its table exists, with the rows not yet committed
            self.connection = InLoad(self.fetch)
            self.connection.execute("SET LOCAL TIME ZONE 'UTC'")
            self.this = TableName.parse(self.where.table).sql
            return
        url = self.project.connections[self.where.connection].url
        try:
            self.connection = psycopg.connect(libpq_url(url), autocommit=True)
        except psycopg.OperationalError as exc:
            raise TransientError(f"cannot connect to '{self.where.connection}' to run checks: {exc}".strip()) from exc
        self.connection.execute("SET TIME ZONE 'UTC'")
        self.this = TableName.parse(self.where.table).sql
        if self.connection.execute("select to_regclass(%s)", (self.this,)).fetchone()[0] is None:  # never loaded
            raise TerminalError(f"its table {self.where.table} in '{self.where.connection}' is not loaded yet; run it first")

    def _open_lake(self, location: str) -> None:
        if self.where.place == "spark":
            from sluice.transforms.spark_session import object_session

            self.connection = object_session(self.project.spark)
        else:
            import duckdb

            self.connection = duckdb.connect(":memory:")
            self.connection.execute("SET TimeZone = 'UTC'")
        self._view(THIS_VIEW, location)

    def _view(self, name: str, location: str) -> None:
        if self.where.place == "spark":
            from sluice.transforms.spark_engine import lake_input, read

            read(self.connection, lake_input(self.lake, location)).createOrReplaceTempView(name)
        else:
            from sluice.transforms.sql import create_input_views

            create_input_views(self.connection, {name: self.lake.duckdb_input(location)})

    def scoped(self, rows: str) -> tuple[Place, str]:
        """The context a check declared with ``rows`` (``load`` or ``table``) runs in, and what it covers: ``load``
        when this place knows the load's rows (``this`` naming them), else ``table`` (the whole output)."""
        if rows != "load" or self.load is None:
            return self, "table"
        if self.load.relation is None or self.load.relation == self.this:
            return self, "load"
        return dataclasses.replace(self, this=self.load.relation), "load"

    def ref(self, target: int | str) -> str:
        """Another object's output as a table name here (its PostgreSQL table, or a view over its lake output)."""
        other = find_object(self.project, target)
        if other is None:
            raise TerminalError(f"no object {target!r}")
        if other.id in self._refs:
            return self._refs[other.id]
        if self.where.place == "postgres":
            from sluice.destinations.sql import TableName

            table = postgres_table(self.project, other)
            if table is None or table[0] != self.where.connection:
                raise TerminalError(
                    f"object {other.id} ({other.name}) has no table in '{self.where.connection}' to check against"
                )
            name = TableName.parse(table[1]).sql
        else:
            location = self.run_outputs.get(other.id) or (
                self.lake.current_location(layer_of(self.project, other), other.name) if other.lake else None
            )
            if location is None:
                raise TerminalError(f"object {other.id} ({other.name}) has no lake output to check against")
            name = f"sluice_ref_{other.id}"
            self._view(name, location)
        self._refs[other.id] = name
        return name

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` (written for this place): its column names and rows (a few: the queries end in LIMIT)."""
        if self.where.place == "spark":
            frame = self.connection.sql(sql)
            return list(frame.columns), [tuple(row) for row in frame.collect()]
        if self.where.place == "postgres":
            cursor = self.connection.execute(sql)
            return [d.name for d in cursor.description or []], list(cursor.fetchall())
        result = self.connection.execute(sql)
        return [d[0] for d in result.description or []], list(result.fetchall())

    def columns(self, name: str) -> list[str]:
        """The columns of the table or view ``name`` here (``this``, or a :meth:`ref`)."""
        return self.query(f"select * from {name} limit 0")[0]

    def close(self) -> None:
        if self.connection is not None and self.where.place != "spark":
            self.connection.close()
        self.connection = None
