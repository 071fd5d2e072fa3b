"""PostgreSQL's catalog (pg_class, pg_attribute, pg_constraint) as :class:`~sluice.api.catalog.Table` values.

Three queries read every table, view, materialized view and foreign table outside the system schemas;
:data:`FINGERPRINT` is one row that changes with any relation, column, type or key (``md5`` over them).
"""

from __future__ import annotations

from typing import Any

from sluice.api.catalog import Catalog, Column, ForeignKey, Scalar, Table

_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
    "AND n.nspname NOT LIKE 'pg\\_temp%'"
)
RELATIONS = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM} AND NOT c.relispartition
ORDER BY n.nspname, c.relname
"""
COLUMNS = f"""
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(bt.typname, t.typname), t.typcategory, a.attnotnull,
       a.atthasdef OR a.attidentity <> '', a.attgenerated <> '' OR a.attidentity = 'a'
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM}
ORDER BY a.attrelid, a.attnum
"""
CONSTRAINTS = f"""
SELECT co.conrelid, co.contype, co.conname, co.conkey, co.confrelid, co.confkey
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE co.contype IN ('p', 'f') AND {_SYSTEM}
ORDER BY co.conrelid, co.conname
"""
FINGERPRINT = f"""
SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
  SELECT concat_ws(':', c.oid, c.relname, n.nspname, c.relkind) AS x
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM}
  UNION ALL
  SELECT concat_ws(':', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.atthasdef)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_SYSTEM}
  UNION ALL
  SELECT concat_ws(':', co.oid, co.conname, co.conkey, co.confkey)
  FROM pg_constraint co WHERE co.contype IN ('p', 'f')
) s
"""

_SCALARS: dict[str, Scalar] = {
    "int2": "Int",
    "int4": "Int",
    "int8": "BigInt",
    "float4": "Float",
    "float8": "Float",
    "numeric": "Numeric",
    "money": "String",
    "bool": "Boolean",
    "timestamp": "DateTime",
    "timestamptz": "DateTime",
    "date": "Date",
    "time": "Time",
    "timetz": "Time",
    "json": "JSON",
    "jsonb": "JSON",
}


def scalar_of(type_name: str, category: str) -> Scalar:
    """The GraphQL scalar of a PostgreSQL type (``typname``, ``typcategory``): arrays are JSON, anything
    not listed (text, uuid, enums, bytea...) a String."""
    if category == "A":
        return "JSON"
    return _SCALARS.get(type_name, "String")


def read_catalog(conn: Any) -> Catalog:
    """Every table and view of the database ``conn`` (a psycopg connection) is connected to."""
    with conn.cursor() as cur:
        cur.execute(RELATIONS)
        relations = cur.fetchall()
        cur.execute(COLUMNS)
        columns = cur.fetchall()
        cur.execute(CONSTRAINTS)
        constraints = cur.fetchall()
        cur.execute("SELECT current_schema()")
        default_schema = str(cur.fetchone()[0] or "public")
        cur.execute(FINGERPRINT)
        fingerprint = str(cur.fetchone()[0])
    names: dict[int, tuple[str, str, str]] = {oid: (schema, name, kind) for oid, schema, name, kind in relations}
    attnames: dict[tuple[int, int], str] = {}
    per_table: dict[int, list[Column]] = {}
    for relid, attnum, attname, formatted, typname, category, notnull, has_default, generated in columns:
        attnames[(relid, attnum)] = attname
        per_table.setdefault(relid, []).append(
            Column(
                name=attname,
                type=str(formatted).lower(),
                scalar=scalar_of(str(typname), str(category)),
                nullable=not notnull,
                has_default=bool(has_default) or bool(generated),
                generated=bool(generated),
                array=str(category) == "A",
            )
        )
    keys: dict[int, tuple[str, ...]] = {}
    foreign: dict[int, list[ForeignKey]] = {}
    for relid, contype, conname, conkey, confrelid, confkey in constraints:
        if relid not in names:
            continue
        cols = tuple(attnames[(relid, n)] for n in conkey)
        if contype == "p":
            keys[relid] = cols
        elif confrelid in names:
            ref_schema, ref_name, _ = names[confrelid]
            refs = tuple(attnames[(confrelid, n)] for n in confkey)
            foreign.setdefault(relid, []).append(ForeignKey(conname, cols, ref_schema, ref_name, refs))
    tables = {}
    for oid, (schema, name, kind) in names.items():
        table = Table(
            schema=schema,
            name=name,
            kind="table" if kind in ("r", "p") else "view",
            columns=tuple(per_table.get(oid, [])),
            primary_key=keys.get(oid, ()),
            foreign_keys=tuple(foreign.get(oid, [])),
        )
        tables[table.key] = table
    return Catalog(tables, default_schema, fingerprint)


def read_fingerprint(conn: Any) -> str:
    """One value that changes whenever a relation, column or key of the database changes."""
    with conn.cursor() as cur:
        cur.execute(FINGERPRINT)
        return str(cur.fetchone()[0])
