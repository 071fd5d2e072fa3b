"""What the REST layer needs to know of the exposed tables: a small catalog model.

``Catalog`` maps an exposed name (what ``/rest/{table}`` names) to a :class:`Table` with its columns,
primary key and foreign keys. :func:`sluice.api.rest.adapt.catalog_of` builds one from apicore's
introspection; tests may build one by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["integer", "number", "boolean", "string", "json", "date", "datetime", "time", "uuid", "bytes"]
Dialect = Literal["postgresql", "mysql", "sqlite"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: ``name``, database ``type`` as the catalog spells it, JSON-side ``kind``, ``nullable``,
    ``has_default`` (a default or generated value: may be left out of an insert)."""

    name: str
    type: str
    kind: Kind = "string"
    nullable: bool = True
    has_default: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """``columns`` of the owning table refer to ``ref_columns`` of the table exposed as ``ref_table``."""

    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """One exposed table or view.

    ``name``: the exposed name; ``schema`` / ``sql_name``: where it lives (``schema`` ``None`` for SQLite
    and the connection's own MySQL database); ``connection``: the connection queries read;
    ``write_connection``: where mutations go (``api.mutations``); ``unique``: unique keys other than the primary key
    (for ``on_conflict``); ``writable``: ``False`` for views, tables without a primary key and read-only sources.
    """

    name: str
    sql_name: str
    columns: Mapping[str, Column]
    schema: str | None = None
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    is_view: bool = False
    writable: bool = True
    connection: str = ""
    write_connection: str = ""
    dialect: Dialect = "postgresql"
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """The exposed tables by name (``tables``) and a ``version`` that changes whenever the catalog is re-read."""

    tables: Mapping[str, Table] = field(default_factory=dict)
    version: int = 0

    def referring(self, name: str) -> list[tuple[Table, ForeignKey]]:
        """The foreign keys of other tables that point at table ``name`` (one-to-many relations)."""
        return [(t, fk) for t in self.tables.values() for fk in t.foreign_keys if fk.ref_table == name]
