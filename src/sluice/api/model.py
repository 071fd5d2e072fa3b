"""The exposed tables: catalogs and ``api:`` settings joined into what the schema and the compilers use.

Names: a table of the connection's default schema is called by its name, another by ``<schema>_<name>``;
characters outside GraphQL names (``[_0-9A-Za-z]``) become ``_``; a table whose name is still taken by another
source is left out with a warning. Relationships come from foreign keys in both directions (Hasura's and
PostGraphile's convention): an object relationship on the referencing table, named after the foreign-key
column without its ``_id`` suffix (or ``<table>_by_<columns>``), and an array relationship on the referenced
table named after the referencing table (or ``<table>_by_<columns>`` when several keys link the same tables).

Tables are read-only (no mutation fields) when they are views, have no primary key, are in a source marked
``read_only``, or their mutations are routed to a connection without that table; :attr:`ExposedTable.read_only`
says why (``docs/api/README.md``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

from sluice.api.catalog import Catalog, Column, Table, select_tables
from sluice.api.settings import ApiSettings, OperationNames

log = logging.getLogger("sluice.api")
_NOT_NAME = re.compile(r"[^_0-9A-Za-z]")
RESERVED = frozenset(
    {"Int", "Float", "String", "Boolean", "ID", "BigInt", "Numeric", "DateTime", "Date", "Time", "JSON", "Query", "Mutation"}
)


def graphql_name(text: str) -> str:
    """``text`` as a GraphQL name: other characters as ``_``, a leading digit or ``__`` prefixed away."""
    name = _NOT_NAME.sub("_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    while name.startswith("__"):
        name = name[1:]
    return name


@dataclass(frozen=True, slots=True)
class Relationship:
    """A link to ``target`` (an exposed table's base name): ``object`` (at most one row) or ``array``;
    ``pairs``: (this table's column, the target's column) equalities."""

    name: str
    kind: Literal["object", "array"]
    target: str
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Writer:
    """Where a table's mutations go: a connection and that connection's table."""

    connection: str
    table: Table


@dataclass(slots=True)
class ExposedTable:
    """One table or view of the API. ``base``: its GraphQL type name; ``fields``: GraphQL field -> column."""

    base: str
    connection: str
    table: Table
    fields: dict[str, Column] = field(default_factory=dict)
    field_of: dict[str, str] = field(default_factory=dict)
    relationships: dict[str, Relationship] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    read_only: str | None = None
    writer: Writer | None = None

    def column(self, name: str) -> Column | None:
        """The column of a GraphQL field name, or of a column name (permissions may use either)."""
        return self.fields.get(name) or self.table.column(name)


OPERATIONS = ("list", "page", "by_pk", "aggregate", "insert", "insert_one", "update", "update_by_pk", "delete", "delete_by_pk")


def default_names(base: str) -> dict[str, str]:
    return {
        "list": base,
        "page": f"{base}_page",
        "by_pk": f"{base}_by_pk",
        "aggregate": f"{base}_aggregate",
        "insert": f"insert_{base}",
        "insert_one": f"insert_{base}_one",
        "update": f"update_{base}",
        "update_by_pk": f"update_{base}_by_pk",
        "delete": f"delete_{base}",
        "delete_by_pk": f"delete_{base}_by_pk",
    }


@dataclass(slots=True)
class Model:
    """Every exposed table by base name, and a resolver for the names ``api:`` uses (name, schema.name, base)."""

    tables: dict[str, ExposedTable]
    aliases: dict[str, str]

    def find(self, name: str) -> ExposedTable | None:
        base = self.aliases.get(name, name)
        return self.tables.get(base)


def build_model(settings: ApiSettings, catalogs: dict[str, Catalog]) -> Model:
    """Join ``settings`` and the catalogs of its connections (by connection name). Logs what it leaves out."""
    tables: dict[str, ExposedTable] = {}
    aliases: dict[str, str] = {}
    for source in settings.sources:
        catalog = catalogs[source.connection]
        for table in select_tables(catalog, source.tables, source.exclude):
            raw = table.name if table.schema == catalog.default_schema else f"{table.schema}_{table.name}"
            base = graphql_name(raw)
            if base in RESERVED:
                base += "_"
            if base in tables:
                log.warning(
                    "data API: %s of '%s' is left out: the name %s is already %s of '%s'",
                    table.qualified,
                    source.connection,
                    base,
                    tables[base].table.qualified,
                    tables[base].connection,
                )
                continue
            exposed = ExposedTable(base, source.connection, table)
            for column in table.columns:
                name = graphql_name(column.name)
                if name in exposed.fields:
                    log.warning("data API: column %s.%s is left out: its name %s is taken", table.qualified, column.name, name)
                    continue
                exposed.fields[name] = column
                exposed.field_of[column.name] = name
            if table.kind == "view":
                exposed.read_only = "a view"
            elif not table.primary_key:
                exposed.read_only = "no primary key"
            elif source.read_only:
                exposed.read_only = "its source is read_only"
            tables[base] = exposed
            for alias in (table.name, table.qualified, f"{source.connection}.{table.qualified}"):
                aliases.setdefault(alias, base)
    model = Model(tables, aliases)
    _relationships(model, catalogs)
    _writers(model, settings, catalogs)
    _names(model, settings)
    return model


def _relationships(model: Model, catalogs: dict[str, Catalog]) -> None:
    by_table = {(t.connection, t.table.key): t for t in model.tables.values()}
    for exposed in model.tables.values():
        for fk in exposed.table.foreign_keys:
            target = by_table.get((exposed.connection, (fk.ref_schema, fk.ref_table)))
            if target is None:
                continue
            pairs = tuple(zip(fk.columns, fk.ref_columns, strict=True))
            several = sum(1 for other in exposed.table.foreign_keys if other.ref_table == fk.ref_table) > 1
            name = fk.columns[0][:-3] if len(fk.columns) == 1 and fk.columns[0].endswith("_id") else ""
            name = graphql_name(name) if name else f"{target.base}_by_{'_'.join(graphql_name(c) for c in fk.columns)}"
            _add(exposed, Relationship(name, "object", target.base, pairs), f"{target.base}_by_{'_'.join(fk.columns)}")
            back = exposed.base if not several else f"{exposed.base}_by_{'_'.join(graphql_name(c) for c in fk.columns)}"
            reverse = tuple((remote, local) for local, remote in pairs)
            _add(target, Relationship(back, "array", exposed.base, reverse), f"{exposed.base}_by_{'_'.join(fk.columns)}")


def _add(exposed: ExposedTable, relationship: Relationship, fallback: str) -> None:
    name = relationship.name
    if name in exposed.fields or name in exposed.relationships:
        name = graphql_name(fallback)
    if name in exposed.fields or name in exposed.relationships:
        log.warning("data API: relationship %s of %s is left out: the name is taken", name, exposed.base)
        return
    exposed.relationships[name] = Relationship(name, relationship.kind, relationship.target, relationship.pairs)


def _writers(model: Model, settings: ApiSettings, catalogs: dict[str, Catalog]) -> None:
    for exposed in model.tables.values():
        if exposed.read_only is None:
            exposed.writer = Writer(exposed.connection, exposed.table)
    for name, connection in settings.mutations.items():
        routed = model.find(name)
        if routed is None or connection not in catalogs:
            continue
        exposed = routed
        catalog = catalogs[connection]
        schema, _, table_name = name.rpartition(".")
        table = catalog.find(schema or catalog.default_schema, table_name or name) or catalog.find(
            catalog.default_schema, exposed.table.name
        )
        if table is None or table.kind == "view" or not table.primary_key:
            why = "has no such table" if table is None else "has it as a view" if table.kind == "view" else "has it without key"
            log.warning("data API: mutations of %s go to '%s', which %s: read-only", exposed.base, connection, why)
            exposed.read_only, exposed.writer = f"its mutations' connection '{connection}' {why}", None
        else:
            exposed.writer = Writer(connection, table)
            if exposed.read_only == "no primary key" or exposed.read_only == "a view":
                exposed.read_only = None


def _names(model: Model, settings: ApiSettings) -> None:
    for exposed in model.tables.values():
        names = default_names(exposed.base)
        custom = _custom(settings, exposed)
        if custom is not None:
            names["page"] = f"{custom.list}_page" if custom.list else names["page"]
            for op in OPERATIONS:
                value = getattr(custom, op, None)
                if isinstance(value, str) and value:
                    names[op] = value
        exposed.names = names


def _custom(settings: ApiSettings, exposed: ExposedTable) -> OperationNames | None:
    for key in (exposed.base, exposed.table.name, exposed.table.qualified):
        if key in settings.operations:
            return settings.operations[key]
    return None
