"""Resolve a source spec to its :class:`~sluice.connectors.base.Source`, importing drivers only when used.

>>> from pathlib import Path
>>> from sluice.connectors.base import SourceContext
>>> from sluice.project.model import SourceSpec
>>> source = open_source(SourceSpec("faker", {"schema": "users", "rows": 3}), SourceContext(Path("."), {}))
>>> source.read().read_all().num_rows
3
"""

from __future__ import annotations

import importlib

from sluice.connectors.base import Source, SourceContext
from sluice.errors import TerminalError, did_you_mean
from sluice.project.model import SourceSpec
from sluice.urls import connection_scheme

# kind -> "module:class"; kind "sql" goes through SQL_SOURCES by the connection's URL scheme.
SOURCES: dict[str, str] = {
    "csv": "sluice.connectors.files:CsvSource",
    "json": "sluice.connectors.files:JsonSource",
    "jsonl": "sluice.connectors.files:JsonLinesSource",
    "parquet": "sluice.connectors.files:ParquetSource",
    "faker": "sluice.connectors.faker_source:FakerSource",
}
SQL_SOURCES: dict[str, str] = {
    "postgresql": "sluice.connectors.postgres:PostgresSource",
    "mysql": "sluice.connectors.mysql:MysqlSource",
    "sqlite": "sluice.connectors.sqlite:SqliteSource",
    "duckdb": "sluice.connectors.duckdb_source:DuckdbSource",
}


def open_source(spec: SourceSpec, context: SourceContext) -> Source:
    """The source for ``spec``; a TerminalError (with a "Did you mean") for an unknown kind or scheme."""
    if spec.kind == "sql":
        return _load(SQL_SOURCES[_sql_scheme(spec, context)])(spec, context)
    target = SOURCES.get(spec.kind)
    if target is None:
        kinds = [*SOURCES, "sql"]
        raise TerminalError(f"unknown source type {spec.kind!r}.{did_you_mean(spec.kind, kinds)} Known types: {', '.join(kinds)}")
    return _load(target)(spec, context)


def _sql_scheme(spec: SourceSpec, context: SourceContext) -> str:
    name = spec.get("connection")
    connection = context.connections.get(name) if isinstance(name, str) else None
    if connection is None:
        known = ", ".join(sorted(context.connections)) or "none defined"
        hint = did_you_mean(str(name), context.connections) if isinstance(name, str) else ""
        raise TerminalError(f"sql source: unknown connection {name!r}.{hint} Known connections: {known}")
    scheme = connection_scheme(connection.url)
    if scheme not in SQL_SOURCES:
        supported = ", ".join(f"{known}://" for known in SQL_SOURCES)
        raise TerminalError(
            f"connection {connection.name!r} ({connection.origin}): cannot read from {scheme}:// URLs."
            f"{did_you_mean(scheme, SQL_SOURCES)} Supported: {supported}"
        )
    return scheme


def _load(target: str) -> type[Source]:
    module_name, class_name = target.split(":")
    source_class: type[Source] = getattr(importlib.import_module(module_name), class_name)
    return source_class
