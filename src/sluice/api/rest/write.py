"""POST (insert, upsert), PATCH (update) and DELETE compiled to SQL with bind parameters.

PostgreSQL: the change and its answer are ONE statement, a data-modifying CTE read by the same
``SELECT total, page_count, body`` as GET (``WITH m AS (INSERT ... RETURNING *) SELECT ...``), where ``total``
counts the changed rows that fail the role's ``check`` (the handler rolls back when it is not 0).
SQLite and MariaDB cannot read a write in a CTE: the change returns the changed rows' keys
(``RETURNING``; MariaDB's UPDATE has none, so its keys are selected first, ``FOR UPDATE``), then the same
SELECT reads those keys: two statements (three for a MariaDB UPDATE) in one transaction. A DELETE's answer is
read before the rows go on those two.

Upsert follows PostgREST: ``POST`` with ``Prefer: resolution=merge-duplicates`` (update the row that has the
key) or ``ignore-duplicates`` (keep it), on the primary key or on ``on_conflict=col,col`` (a unique key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.api.rest.access import Access
from sluice.api.rest.errors import BODY, COLUMN, CONFLICT_TARGET, RestError
from sluice.api.rest.model import Column, Table
from sluice.api.rest.sql import Dialect, Frag, join
from sluice.api.rest.where import Where, convert

MAX_ROWS_PER_POST = 10_000


@dataclass(slots=True)
class Change:
    """The statement(s) of one write.

    ``change``: the DML (PostgreSQL: the whole CTE statement answering ``total, count, body``; others: the DML
    returning the changed keys). ``pre``: MariaDB UPDATE/ DELETE, the keys to change, selected first.
    """

    change: Frag
    pre: Frag | None = None
    one_statement: bool = False


def body_value(value: Any, column: Column, dialect: Dialect) -> Any:
    """A body value as a bind parameter (a JSON column's value is stored as JSON text, strings included)."""
    if column.kind == "json" and value is not None:
        import json

        return json.dumps(value, default=str)
    return convert(value, column, dialect)


def preset(access: Access, claims: Mapping[str, Any]) -> dict[str, Any]:
    """The role's ``set`` presets with ``{claim: NAME}`` values filled in."""
    out = {}
    for name, value in access.set.items():
        if isinstance(value, Mapping) and set(value) == {"claim"}:
            value = claims.get(str(value["claim"]))
        out[name] = value
    return out


def insert_columns(table: Table, rows: Sequence[Mapping[str, Any]], access: Access, only: Sequence[str] | None) -> list[Column]:
    """The columns an insert writes: ``columns=`` when given, else every key of the body (first-seen order)."""
    names: list[str] = list(only) if only else []
    if not only:
        seen: set[str] = set()
        for row in rows:
            for key in row:
                if key not in seen:
                    seen.add(key)
                    names.append(key)
    columns = []
    for name in names:
        column = table.columns.get(name)
        if column is None:
            raise RestError(f"column {name!r} of {table.name!r} does not exist", status=400, code=COLUMN)
        if name not in access.columns and name not in access.set:
            raise RestError(f"the role may not write column {name!r} of {table.name!r}", status=403, code="SLR403")
        columns.append(column)
    return columns


def insert(
    table: Table,
    dialect: Dialect,
    rows: Sequence[Mapping[str, Any]],
    access: Access,
    claims: Mapping[str, Any],
    *,
    only: Sequence[str] | None,
    missing_default: bool,
    resolution: str | None,
    on_conflict: Sequence[str] | None,
    update_access: Access | None,
) -> Frag:
    """``INSERT INTO table AS t (cols) VALUES ... [ON CONFLICT ...]`` (without RETURNING)."""
    if not rows:
        raise RestError("the body holds no row", status=400, code=BODY)
    if len(rows) > MAX_ROWS_PER_POST:
        raise RestError(f"at most {MAX_ROWS_PER_POST} rows per request", status=413, code=BODY)
    presets = preset(access, claims)
    columns = [c for c in insert_columns(table, rows, access, only) if c.name not in presets]
    columns += [table.columns[name] for name in presets if name in table.columns]
    q = dialect.quote
    target = dialect.table(table.schema, table.sql_name)
    # MariaDB's ON DUPLICATE KEY UPDATE returns the kept row: ignore-duplicates is INSERT IGNORE there.
    ignore = " IGNORE" if dialect.name == "mysql" and resolution == "ignore-duplicates" else ""
    frag = Frag(f"INSERT{ignore} INTO {target}")
    if dialect.name == "postgresql":
        frag.add(" AS t")
    if not columns:
        if dialect.name == "mysql":
            frag.add(" () VALUES " + ", ".join("()" for _ in rows))
        elif len(rows) == 1:
            frag.add(" DEFAULT VALUES")
        else:
            raise RestError("rows without any column can be inserted one at a time", status=400, code=BODY)
    else:
        frag.add(" (" + ", ".join(q(c.name) for c in columns) + ") VALUES ")
        tuples = []
        for row in rows:
            values = Frag("(")
            for i, column in enumerate(columns):
                if i:
                    values.add(", ")
                if column.name in presets:
                    values.add("%s", convert(presets[column.name], column, dialect))
                elif column.name in row:
                    values.add("%s", body_value(row[column.name], column, dialect))
                elif missing_default and dialect.name != "sqlite":
                    values.add("DEFAULT")
                else:
                    values.add("NULL")
            tuples.append(values.add(")"))
        frag.add(join(tuples, ", "))
    if resolution and not ignore:
        frag.add(upsert_clause(table, dialect, columns, resolution, on_conflict, update_access, claims))
    return frag


def upsert_clause(
    table: Table,
    dialect: Dialect,
    columns: Sequence[Column],
    resolution: str,
    on_conflict: Sequence[str] | None,
    update_access: Access | None,
    claims: Mapping[str, Any],
) -> Frag:
    """``ON CONFLICT (key) DO UPDATE SET ... WHERE <update filter>`` / ``DO NOTHING`` (MariaDB: ``ON DUPLICATE
    KEY UPDATE``, which takes no key: any unique key of the table)."""
    key = tuple(on_conflict) if on_conflict else table.primary_key
    keys = [table.primary_key, *table.unique]
    if not key or not any(set(key) == set(k) for k in keys if k):
        raise RestError(
            f"on_conflict ({', '.join(key)}) is not the primary key or a unique key of {table.name!r}",
            status=400,
            code=CONFLICT_TARGET,
        )
    q = dialect.quote
    updated = [c for c in columns if c.name not in key]
    if resolution == "merge-duplicates":
        if update_access is None:
            raise RestError("merge-duplicates needs the update permission", status=403, code="SLR403")
        for column in updated:
            if column.name not in update_access.columns and column.name not in update_access.set:
                raise RestError(f"the role may not update column {column.name!r}", status=403, code="SLR403")
    if dialect.name == "mysql":
        if resolution == "ignore-duplicates" or not updated:
            first = q(key[0])
            return Frag(f" ON DUPLICATE KEY UPDATE {first} = {first}")
        if update_access is not None and update_access.filter:
            raise RestError("merge-duplicates with an update row filter is not available on MariaDB", status=400)
        return Frag(" ON DUPLICATE KEY UPDATE " + ", ".join(f"{q(c.name)} = VALUES({q(c.name)})" for c in updated))
    target = " ON CONFLICT (" + ", ".join(q(k) for k in key) + ")"
    if resolution == "ignore-duplicates" or not updated:
        return Frag(target + " DO NOTHING")
    sets = ", ".join(f"{q(c.name)} = excluded.{q(c.name)}" for c in updated)
    frag = Frag(f"{target} DO UPDATE SET {sets}")
    if update_access is not None and update_access.filter:
        alias = "t" if dialect.name == "postgresql" else dialect.table(table.schema, table.sql_name)
        frag.add(" WHERE ").add(Where(table, alias, dialect, claims=claims).compile(update_access.filter))
    return frag


def update(
    table: Table,
    dialect: Dialect,
    body: Mapping[str, Any],
    access: Access,
    claims: Mapping[str, Any],
    where: Frag,
    alias: str,
) -> Frag:
    """``UPDATE table AS alias SET ... WHERE <where>`` (``where`` already holds the role's filter)."""
    presets = preset(access, claims)
    sets: list[Frag] = []
    q = dialect.quote
    for name, value in body.items():
        column = table.columns.get(name)
        if column is None:
            raise RestError(f"column {name!r} of {table.name!r} does not exist", status=400, code=COLUMN)
        if name not in access.columns:
            raise RestError(f"the role may not update column {name!r} of {table.name!r}", status=403, code="SLR403")
        if name not in presets:
            sets.append(Frag(f"{q(name)} = %s", [body_value(value, column, dialect)]))
    for name, value in presets.items():
        if name in table.columns:
            sets.append(Frag(f"{q(name)} = %s", [convert(value, table.columns[name], dialect)]))
    if not sets:
        raise RestError("the body names no column to update", status=400, code=BODY)
    target = dialect.table(table.schema, table.sql_name)
    return (
        Frag(f"UPDATE {target} {'AS ' if dialect.name != 'mysql' else ''}{alias} SET ")
        .add(join(sets, ", "))
        .add(" WHERE ")
        .add(where)
    )


def delete(table: Table, dialect: Dialect, where: Frag, alias: str) -> Frag:
    """``DELETE FROM table AS alias WHERE <where>``."""
    target = dialect.table(table.schema, table.sql_name)
    if dialect.name == "mysql":
        return Frag(f"DELETE {alias} FROM {target} {alias} WHERE ").add(where)
    return Frag(f"DELETE FROM {target} AS {alias} WHERE ").add(where)


def keys_in(table: Table, dialect: Dialect, alias: str, keys: Sequence[Sequence[Any]]) -> Frag:
    """``(alias.pk1, alias.pk2) IN ((..), (..))`` for changed rows' keys (``1=0`` when none)."""
    if not keys:
        return Frag("1=0")
    q = dialect.quote
    cols = [f"{alias}.{q(k)}" for k in table.primary_key]
    if len(cols) == 1:
        return Frag(f"{cols[0]} IN (" + ", ".join("%s" for _ in keys) + ")", [k[0] for k in keys])
    one = "(" + ", ".join("%s" for _ in cols) + ")"
    params = [v for key in keys for v in key]
    return Frag("(" + ", ".join(cols) + ") IN (" + ", ".join(one for _ in keys) + ")", params)
