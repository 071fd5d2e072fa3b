"""What capture reads from PostgreSQL's catalog: tables, columns (mapped by :mod:`sluice.cdc.pg_types`), primary keys,
constant column defaults (``pg_attrdef``; an expression default such as ``now()`` or ``nextval(...)`` is left out).

Also the comparison of two schemas of a table, used to name the schema change capture saw
(logical decoding does not carry DDL; see ``docs/cdc/postgresql.md``).
"""

from __future__ import annotations

from typing import Any

from sluice.cdc import pg_types
from sluice.cdc.events import Column, TableSchema

TABLES_SQL = """
SELECT n.nspname, c.relname, a.attname,
       format_type(a.atttypid, a.atttypmod),
       format_type(bt.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       bt.typtype::text, NOT a.attnotnull,
       CASE WHEN bt.typtype = 'e'
            THEN ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = bt.oid ORDER BY e.enumsortorder) END,
       ARRAY(SELECT ka.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute ka ON ka.attrelid = c.oid AND ka.attnum = k.attnum ORDER BY k.ord),
       CASE WHEN a.atthasdef AND a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  {where}
ORDER BY n.nspname, c.relname, a.attnum
"""


def read_tables(conn: Any, namespace: str | None = None, name: str | None = None) -> list[TableSchema]:
    """Tables of the database (or the one ``namespace.name``), columns in order, key from the primary key.

    ``conn`` is a psycopg connection. Partitions are left out (their parent is read)."""
    where = ""
    params: list[Any] = []
    if namespace is not None:
        where += " AND n.nspname = %s"
        params.append(namespace)
    if name is not None:
        where += " AND c.relname = %s"
        params.append(name)
    tables: dict[tuple[str, str], tuple[list[Column], list[str]]] = {}
    for nsp, rel, att, source_type, base_type, typtype, nullable, labels, key, default in conn.execute(
        TABLES_SQL.format(where=where), params
    ):
        columns, _ = tables.setdefault((nsp, rel), ([], list(key or [])))
        columns.append(pg_types.column(att, source_type, base_type, typtype, nullable, labels, default))
    return [TableSchema(namespace=n, name=t, columns=cols, key=key) for (n, t), (cols, key) in tables.items()]


def describe_change(old: TableSchema, new: TableSchema) -> tuple[str, dict[str, str]]:
    """``(change, renamed)`` naming what turned ``old`` into ``new``: ``add_column``, ``drop_column``,
    ``alter_column``, ``rename_column`` (one column gone and one added at the same place with the same type),
    or ``other`` (several kinds at once, or nothing visible)."""
    old_cols = {c.name: c for c in old.columns}
    new_cols = {c.name: c for c in new.columns}
    added = [c for c in new.columns if c.name not in old_cols]
    dropped = [c for c in old.columns if c.name not in new_cols]
    altered = [n for n, c in new_cols.items() if n in old_cols and old_cols[n].source_type != c.source_type]
    if len(added) == 1 and len(dropped) == 1 and not altered:
        gone, came = dropped[0], added[0]
        same_place = old.columns.index(gone) == new.columns.index(came)
        if same_place and gone.source_type == came.source_type:
            return "rename_column", {gone.name: came.name}
    kinds = [kind for kind, found in (("add_column", added), ("drop_column", dropped), ("alter_column", altered)) if found]
    if len(kinds) == 1:
        return kinds[0], {}
    return "other", {}
