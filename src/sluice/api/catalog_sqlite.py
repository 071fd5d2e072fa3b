"""SQLite's catalog (sqlite_schema, ``table_xinfo``, ``foreign_key_list``) as :class:`~sluice.api.catalog.Table`
values. The fingerprint is ``PRAGMA schema_version``, which SQLite bumps on every schema change.

Types follow SQLite's affinity rules on the declared type (https://sqlite.org/datatype3.html): ``INT`` in
the name is Int, ``REAL``/``FLOA``/``DOUB`` Float, ``DEC``/``NUMERIC`` Numeric, ``BOOL`` Boolean,
``DATETIME``/``TIMESTAMP`` DateTime, ``DATE`` Date, ``TIME`` Time, ``JSON`` JSON, anything else a String.
A table whose only key is the implicit rowid has no primary key here (read-only in the API).
"""

from __future__ import annotations

from typing import Any

from sluice.api.catalog import Catalog, Column, ForeignKey, Scalar, Table

SCHEMA = "main"


def scalar_of(declared: str) -> Scalar:
    """The GraphQL scalar of a declared SQLite column type."""
    text = declared.upper()
    if "BOOL" in text:
        return "Boolean"
    if "INT" in text:
        return "Int"
    if any(part in text for part in ("REAL", "FLOA", "DOUB")):
        return "Float"
    if "DEC" in text or "NUMERIC" in text:
        return "Numeric"
    if "DATETIME" in text or "TIMESTAMP" in text:
        return "DateTime"
    if "DATE" in text:
        return "Date"
    if "TIME" in text:
        return "Time"
    if "JSON" in text:
        return "JSON"
    return "String"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_catalog(conn: Any) -> Catalog:
    """Every table and view of the ``main`` database of ``conn`` (a sqlite3 connection)."""
    fingerprint = read_fingerprint(conn)
    rows = conn.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name"
    ).fetchall()
    tables = {}
    for name, kind in rows:
        info = conn.execute(f"PRAGMA main.table_xinfo({_quote(name)})").fetchall()
        columns = []
        keys: list[tuple[int, str]] = []
        for _cid, column, declared, notnull, default, pk, hidden in info:
            if hidden == 1:
                continue
            generated = hidden in (2, 3)
            integer_key = pk == 1 and str(declared).upper() == "INTEGER"
            columns.append(
                Column(
                    name=column,
                    type=str(declared or "").lower(),
                    scalar=scalar_of(str(declared or "")),
                    nullable=not notnull and not integer_key,
                    has_default=default is not None or integer_key or generated,
                    generated=generated,
                )
            )
            if pk:
                keys.append((pk, column))
        foreign: dict[int, tuple[str, list[str], list[str]]] = {}
        if kind == "table":
            for fk_id, _seq, ref_table, source, target, *_ in conn.execute(
                f"PRAGMA main.foreign_key_list({_quote(name)})"
            ).fetchall():
                entry = foreign.setdefault(fk_id, (ref_table, [], []))
                entry[1].append(source)
                entry[2].append(target)
        fks = []
        for fk_id, (ref_table, sources, targets) in sorted(foreign.items()):
            if any(t is None for t in targets):  # REFERENCES parent without columns: the parent's primary key
                parent = [
                    r[1]
                    for r in sorted(conn.execute(f"PRAGMA main.table_info({_quote(ref_table)})").fetchall(), key=lambda r: r[5])
                    if r[5]
                ]
                targets = parent
            fks.append(ForeignKey(f"fk_{name}_{fk_id}", tuple(sources), SCHEMA, ref_table, tuple(targets)))
        table = Table(
            schema=SCHEMA,
            name=name,
            kind="table" if kind == "table" else "view",
            columns=tuple(columns),
            primary_key=tuple(column for _, column in sorted(keys)),
            foreign_keys=tuple(fks),
        )
        tables[table.key] = table
    return Catalog(tables, SCHEMA, fingerprint)


def read_fingerprint(conn: Any) -> str:
    """``PRAGMA schema_version``: SQLite increments it on every schema change."""
    return str(conn.execute("PRAGMA schema_version").fetchone()[0])
