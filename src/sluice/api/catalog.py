"""What a database's catalog says about its tables, as the data API needs it.

Each dialect's reader (:mod:`sluice.api.catalog_pg`, :mod:`catalog_mysql`, :mod:`catalog_sqlite`) returns
:class:`Table` values: columns with their database type, the GraphQL scalar that represents them and their
nullability, the primary key and the foreign keys. ``fingerprint`` queries are cheap (one row) and change
whenever a table, column or key changes, so the API can notice a migration without re-reading everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

Scalar = Literal["Int", "Float", "String", "Boolean", "BigInt", "Numeric", "DateTime", "Date", "Time", "JSON"]
"""The GraphQL scalar of a column. BigInt and Numeric travel as JSON strings so no digit is lost."""

ORDERABLE: frozenset[str] = frozenset({"Int", "Float", "String", "BigInt", "Numeric", "DateTime", "Date", "Time", "Boolean"})
NUMERIC: frozenset[str] = frozenset({"Int", "Float", "BigInt", "Numeric"})


@dataclass(frozen=True, slots=True)
class Column:
    """One column: ``type`` as the database spells it (lower case), ``scalar`` its GraphQL scalar,
    ``nullable``, ``has_default`` (a default, an identity or auto-increment: may be left out of an insert),
    ``generated`` (computed by the database: never written), ``array`` (a PostgreSQL array)."""

    name: str
    type: str
    scalar: Scalar
    nullable: bool = True
    has_default: bool = False
    generated: bool = False
    array: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """``columns`` of the owning table reference ``ref_columns`` of ``ref_schema.ref_table``."""

    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """A table or view. ``schema`` is the PostgreSQL schema, the MariaDB database or ``main`` for SQLite."""

    schema: str
    name: str
    kind: Literal["table", "view"]
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    column_map: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.column_map.update({column.name: column for column in self.columns})

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)

    def column(self, name: str) -> Column | None:
        return self.column_map.get(name)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The tables of one database (``default_schema``: where unqualified names are looked up)."""

    tables: dict[tuple[str, str], Table]
    default_schema: str
    fingerprint: str = ""

    def find(self, schema: str, name: str) -> Table | None:
        return self.tables.get((schema, name))


def matches(pattern: str, table: Table, default_schema: str) -> bool:
    """``pattern`` names ``table``: ``schema.glob`` against its schema and name, a bare glob against the
    tables of the connection's default schema only (``public``, the URL's database, ``main``)."""
    if "." in pattern:
        schema, _, name = pattern.partition(".")
        return fnmatchcase(table.schema, schema) and fnmatchcase(table.name, name)
    return table.schema == default_schema and fnmatchcase(table.name, pattern)


def select_tables(catalog: Catalog, patterns: list[str], exclude: list[str]) -> list[Table]:
    """The tables of ``catalog`` named by ``patterns`` and by none of ``exclude``, in catalog order."""
    return [
        table
        for table in catalog.tables.values()
        if any(matches(p, table, catalog.default_schema) for p in patterns)
        and not any(matches(p, table, catalog.default_schema) for p in exclude)
    ]


def unmatched(catalog: Catalog, patterns: list[str]) -> list[str]:
    """The patterns of ``patterns`` that name no table of ``catalog`` (for ``sluice validate --live``)."""
    return [p for p in patterns if not any(matches(p, t, catalog.default_schema) for t in catalog.tables.values())]
