"""MariaDB / MySQL's catalog (information_schema) as :class:`~sluice.api.catalog.Table` values.

Only the database the connection URL names is read (its name is the tables' ``schema``). A ``LONGTEXT``
column with a ``json_valid`` check (MariaDB's ``JSON`` type) is JSON; ``TINYINT(1)`` is Boolean;
unsigned ``INT`` is BigInt (it passes 2^31).
"""

from __future__ import annotations

from typing import Any

from sluice.api.catalog import Catalog, Column, ForeignKey, Scalar, Table

TABLES = """
SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME
"""
COLUMNS = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION
"""
KEYS = """
SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,
       k.REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE k
WHERE k.TABLE_SCHEMA = DATABASE() AND (k.CONSTRAINT_NAME = 'PRIMARY' OR k.REFERENCED_TABLE_NAME IS NOT NULL)
ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION
"""
JSON_CHECKS = """
SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() AND CHECK_CLAUSE LIKE 'json_valid(%'
"""
FINGERPRINT = """
SELECT CONCAT(
  (SELECT CONCAT(COUNT(*), '-', COALESCE(SUM(CRC32(CONCAT_WS(',', TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE,
          ORDINAL_POSITION, COALESCE(COLUMN_DEFAULT, '')))), 0))
   FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()), ':',
  (SELECT CONCAT(COUNT(*), '-', COALESCE(SUM(CRC32(CONCAT_WS(',', TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME,
          COALESCE(REFERENCED_TABLE_NAME, ''), ORDINAL_POSITION))), 0))
   FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()), ':',
  (SELECT CONCAT(COUNT(*), '-', COALESCE(SUM(CRC32(CONCAT_WS(',', TABLE_NAME, TABLE_TYPE))), 0))
   FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()))
"""

_SCALARS: dict[str, Scalar] = {
    "tinyint": "Int",
    "smallint": "Int",
    "mediumint": "Int",
    "int": "Int",
    "integer": "Int",
    "year": "Int",
    "bigint": "BigInt",
    "float": "Float",
    "double": "Float",
    "decimal": "Numeric",
    "datetime": "DateTime",
    "timestamp": "DateTime",
    "date": "Date",
    "time": "Time",
    "json": "JSON",
}


def scalar_of(data_type: str, column_type: str, json: bool) -> Scalar:
    """The GraphQL scalar of a column (``DATA_TYPE``, ``COLUMN_TYPE``, whether a json_valid check holds it)."""
    if json:
        return "JSON"
    if column_type.startswith("tinyint(1)"):
        return "Boolean"
    if data_type in ("int", "integer", "mediumint") and "unsigned" in column_type:
        return "BigInt"
    return _SCALARS.get(data_type, "String")


def read_catalog(conn: Any) -> Catalog:
    """Every table and view of the database ``conn`` (a PyMySQL connection) uses."""
    with conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        database = str(cur.fetchone()[0] or "")
        cur.execute(TABLES)
        tables = cur.fetchall()
        cur.execute(COLUMNS)
        columns = cur.fetchall()
        cur.execute(KEYS)
        keys = cur.fetchall()
        cur.execute(JSON_CHECKS)
        checks = cur.fetchall()
        cur.execute(FINGERPRINT)
        fingerprint = str(cur.fetchone()[0])
    json_columns = {(t, clause.split("`")[1]) for t, clause in checks if clause.count("`") >= 2}
    per_table: dict[str, list[Column]] = {}
    for table, name, data_type, column_type, nullable, default, extra in columns:
        extra = str(extra or "").lower()
        generated = "generated" in extra or "virtual" in extra or "persistent" in extra or "stored" in extra
        per_table.setdefault(table, []).append(
            Column(
                name=name,
                type=str(column_type).lower(),
                scalar=scalar_of(str(data_type).lower(), str(column_type).lower(), (table, name) in json_columns),
                nullable=nullable == "YES",
                has_default=default is not None or "auto_increment" in extra or generated,
                generated=generated,
            )
        )
    primary: dict[str, list[str]] = {}
    foreign: dict[tuple[str, str], tuple[list[str], str, str, list[str]]] = {}
    for table, constraint, column, ref_schema, ref_table, ref_column in keys:
        if constraint == "PRIMARY":
            primary.setdefault(table, []).append(column)
        else:
            entry = foreign.setdefault((table, constraint), ([], str(ref_schema), str(ref_table), []))
            entry[0].append(column)
            entry[3].append(ref_column)
    result = {}
    for name, kind in tables:
        fks = tuple(
            ForeignKey(constraint, tuple(cols), ref_schema, ref_table, tuple(refs))
            for (table, constraint), (cols, ref_schema, ref_table, refs) in foreign.items()
            if table == name
        )
        table = Table(
            schema=database,
            name=name,
            kind="view" if "VIEW" in str(kind).upper() else "table",
            columns=tuple(per_table.get(name, [])),
            primary_key=tuple(primary.get(name, [])),
            foreign_keys=fks,
        )
        result[table.key] = table
    return Catalog(result, database, fingerprint)


def read_fingerprint(conn: Any) -> str:
    """One value that changes whenever a table, column or key of the database changes."""
    with conn.cursor() as cur:
        cur.execute(FINGERPRINT)
        return str(cur.fetchone()[0])
