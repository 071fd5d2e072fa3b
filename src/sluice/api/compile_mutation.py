"""Mutations as SQL: insert (one, many, upsert on the primary key), update and delete (by filter, by key),
each answering with ``returning`` built as JSON in the database.

- PostgreSQL: **one statement** per mutation field: a data-modifying CTE and the read of its rows
  (``WITH m AS (INSERT ... RETURNING *) SELECT json_build_object('affected_rows', ..., 'returning', ...)``).
  When the role has a ``check``, the same statement counts the written rows that fail it and the
  transaction is rolled back if any does.
- MariaDB and SQLite cannot read what a statement writes in the same statement, so a mutation field is a
  transaction of two or three statements: the keys of the rows concerned (``SELECT ... FOR UPDATE`` on
  MariaDB, ``INSERT ... RETURNING`` of the keys), the write by key, and the read of ``returning`` by key
  (before the write for a delete). The written rows are exactly those read, and the transaction holds
  their locks throughout (MariaDB) or the database's write lock (SQLite ``BEGIN IMMEDIATE``).

Several mutation fields in one request run one after the other, each in its own transaction, as the
GraphQL spec orders them. A mutation routed by ``api.mutations`` writes and reads its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from graphql import GraphQLField

from sluice.api.catalog import Column, Table
from sluice.api.compile_select import json_fields
from sluice.api.compiler import Compiler, Fields
from sluice.api.databases import Database
from sluice.api.dialects import Dialect
from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable, graphql_name
from sluice.api.permissions import Access, preset_value
from sluice.api.schema import RootField

NewCompiler = Callable[[Dialect], Compiler]
_MANY = ("insert", "update", "delete")


class _Mutation:
    def __init__(self, new: NewCompiler, db: Database, root: RootField, f: Fields, definition: GraphQLField) -> None:
        self.db = db
        self.dialect = db.dialect
        self.c = new(db.dialect)
        self.new = new
        self.root = root
        self.f = f
        self.t: ExposedTable = self.c.model.tables[root.base]
        writer = self.t.writer
        assert writer is not None
        self.table: Table = writer.table
        self.routed = writer.connection != self.t.connection or writer.table is not self.t.table
        self.args = self.c.arguments(definition, f.nodes[0])
        self.columns = {graphql_name(c.name): c for c in self.table.columns if not c.generated}
        self.op = root.op.removesuffix("_one").removesuffix("_by_pk")
        self.access = self.c.permissions.access(self.c.principal, self.t, self.op)
        self.many = root.op in _MANY
        self.returning = self._returning_fields()
        self.read_access = self.c.permissions.access(self.c.principal, self.t, "select") if self.returning else Access()

    # What is asked back.

    def _returning_fields(self) -> list[Fields]:
        if not self.many:
            return self.c.sub_fields(self.t.base, self.f.nodes)
        result = []
        for sub in self.c.sub_fields(f"{self.t.base}_mutation_response", self.f.nodes):
            if sub.name == "returning":
                result.extend(self.c.sub_fields(self.t.base, sub.nodes))
        return result

    def answer_json(self, c: Compiler, alias: str, source: str, count_sql: str) -> list[tuple[str, str]]:
        """The JSON pairs of the answer over the written rows (``source``: ``FROM ... WHERE ...`` of them)."""
        writer = self.table if self.routed else None
        pairs: list[tuple[str, str]] = []
        if self.many:
            for sub in c.sub_fields(f"{self.t.base}_mutation_response", self.f.nodes):
                if sub.name == "affected_rows":
                    pairs.append((sub.key, count_sql))
                elif sub.name == "__typename":
                    pairs.append((sub.key, c.dialect.literal(f"{self.t.base}_mutation_response")))
                elif sub.name == "returning":
                    j = json_fields(c, self.t, alias, c.sub_fields(self.t.base, sub.nodes), self.read_access, writer)
                    pairs.append((sub.key, c.dialect.nested(c.dialect.array(j, source, [], None, None, correlated=False))))
        else:
            j = json_fields(c, self.t, alias, self.returning, self.read_access, writer)
            pairs.append(("one", c.dialect.nested(f"(SELECT {j} {source} LIMIT 1)")))
        return pairs

    def finish(self, answer: dict[str, Any]) -> Any:
        if answer.pop("__violations", 0):
            raise DataApiError(
                f"a row does not pass role '{self.c.principal.role}''s check on {self.t.base}",
                status=403,
                code="permission-denied",
            )
        return answer if self.many else answer.get("one")

    # Values written.

    def column(self, name: str) -> Column:
        column = self.columns.get(name)
        if column is None:
            raise DataApiError(f"{name} is not a writable column of {self.t.base}", code="validation-failed")
        return column

    def values(self, given: dict[str, Any]) -> dict[str, Any]:
        """Column name -> value of one row to write, after permissions: listed columns, presets."""
        row: dict[str, Any] = {}
        for name, value in given.items():
            column = self.column(name)
            self.c.permissions.require_column(self.c.principal, self.t, self.access, column.name, self.op)
            row[column.name] = value
        for name, value in self.access.preset.items():
            if self.table.column(name) is None:
                raise DataApiError(
                    f"role preset names {name!r}, not a column of {self.t.base}", status=500, code="bad-permission"
                )
            row[name] = preset_value(self.c.principal, value, name)
        return row

    def key_filter(self, c: Compiler, alias: str) -> str:
        conditions = []
        for name in self.table.primary_key:
            field = graphql_name(name)
            source = self.args["pk_columns"] if self.root.op == "update_by_pk" else self.args
            conditions.append(f"{c.col(alias, name)} = {c.param(source[field], self.table.column_map[name])}")
        return " AND ".join(conditions)

    def row_filter(self, c: Compiler, alias: str) -> str:
        """Which rows an update or delete touches: the request's (or the key's) and the role's filter."""
        asked = (
            self.key_filter(c, alias)
            if self.root.op.endswith("_by_pk")
            else c.where(self.t, alias, self.args.get("where"), trusted=False)
        )
        return f"{asked} AND {c.where(self.t, alias, self.access.filter, trusted=True)}"

    def assignments(self, c: Compiler, prefix: str = "") -> list[str]:
        given = self.values(dict(self.args.get("_set") or {}))
        if not given:
            raise DataApiError("nothing to update: give _set", code="validation-failed")
        return [
            f"{prefix}{c.dialect.quote(name)} = {c.param(value, self.table.column_map[name])}" for name, value in given.items()
        ]

    def insert_rows(self) -> list[dict[str, Any]]:
        objects = self.args["objects"] if self.root.op == "insert" else [self.args["object"]]
        return [self.values(dict(obj)) for obj in objects]

    def conflict(self, c: Compiler, alias: str) -> str:
        """The upsert clause (on the primary key) of ``on_conflict``, or ``""``."""
        spec = self.args.get("on_conflict")
        if spec is None:
            return ""
        update = self.c.permissions.access(self.c.principal, self.t, "update") if spec["update_columns"] else None
        names = list(dict.fromkeys(self.column(n).name for n in spec["update_columns"]))  # a column named twice: once
        for name in names:
            assert update is not None
            self.c.permissions.require_column(self.c.principal, self.t, update, name, "update")
        q = c.dialect.quote
        if c.dialect.name == "mysql":
            if spec.get("where") or (update is not None and update.filter):
                raise DataApiError("on_conflict.where is not supported on MariaDB/MySQL", code="validation-failed")
            sets = [f"{q(n)} = VALUES({q(n)})" for n in names] or [
                f"{q(self.table.primary_key[0])} = {q(self.table.primary_key[0])}"
            ]
            return " ON DUPLICATE KEY UPDATE " + ", ".join(sets)
        target = ", ".join(q(n) for n in self.table.primary_key)
        if not names:
            return f" ON CONFLICT ({target}) DO NOTHING"
        assert update is not None
        sets = [f"{q(n)} = {'EXCLUDED' if c.dialect.name == 'postgresql' else 'excluded'}.{q(n)}" for n in names]
        where = [c.where(self.t, alias, spec.get("where"), trusted=False), c.where(self.t, alias, update.filter, trusted=True)]
        return f" ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)} WHERE {' AND '.join(where)}"

    def values_sql(self, c: Compiler, rows: list[dict[str, Any]], names: list[str]) -> str:
        if not names:
            return "DEFAULT VALUES" if c.dialect.name != "mysql" else "() VALUES " + ", ".join("()" for _ in rows)
        tuples = []
        for row in rows:
            tuples.append(
                "(" + ", ".join(c.param(row[n], self.table.column_map[n]) if n in row else "DEFAULT" for n in names) + ")"
            )
        return f"({', '.join(c.dialect.quote(n) for n in names)}) VALUES {', '.join(tuples)}"


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row))


def _loads(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, (str, bytes)) else text
    return value if isinstance(value, dict) else {}


def run_mutation(new: NewCompiler, db: Database, root: RootField, f: Fields, definition: GraphQLField) -> Any:
    """Compile and run one mutation field on ``db``; its answer as a Python value."""
    m = _Mutation(new, db, root, f, definition)
    if m.op == "insert" and not (m.args.get("objects") if root.op == "insert" else True):
        return _empty(m)
    with db.connection() as conn:
        if db.dialect.returns_in_cte:
            return _postgres(m, db, conn)
        return _stepwise(m, db, conn)


def _empty(m: _Mutation) -> Any:
    answer: dict[str, Any] = {}
    for sub in m.c.sub_fields(f"{m.t.base}_mutation_response", m.f.nodes):
        answer[sub.key] = 0 if sub.name == "affected_rows" else [] if sub.name == "returning" else f"{m.t.base}_mutation_response"
    return answer


def _postgres(m: _Mutation, db: Database, conn: Any) -> Any:
    c = m.c
    ref = c.dialect.table_ref(m.table)
    target = c.alias()
    if m.op == "insert":
        rows = m.insert_rows()
        names = _names(rows)
        if not names and len(rows) > 1:
            raise DataApiError("insert at least one column per row", code="validation-failed")
        write = f"INSERT INTO {ref} AS {target} {m.values_sql(c, rows, names)}{m.conflict(c, target)} RETURNING {target}.*"
    elif m.op == "update":
        sets = m.assignments(c)
        write = f"UPDATE {ref} AS {target} SET {', '.join(sets)} WHERE {m.row_filter(c, target)} RETURNING {target}.*"
    else:
        write = f"DELETE FROM {ref} AS {target} WHERE {m.row_filter(c, target)} RETURNING {target}.*"
    alias = c.alias()
    pairs = m.answer_json(c, alias, f"FROM m {alias}", "(SELECT count(*) FROM m)")
    check = m.access.check if m.op in ("insert", "update") else {}
    if check:
        checked = c.alias()
        pairs.append(
            (
                "__violations",
                f"(SELECT count(*) FROM m {checked} WHERE NOT coalesce({c.where(m.t, checked, check, trusted=True)}, false))",
            )
        )
    sql = f"WITH m AS ({write}) SELECT ({c.dialect.json_object(pairs)})::text"
    if not check:
        return m.finish(_loads(db.execute(conn, sql, c.params)[0][0]))
    with db.transaction(conn):
        return m.finish(_loads(db.execute(conn, sql, c.params)[0][0]))


def _keys_filter(c: Compiler, table: Table, alias: str, keys: list[tuple[Any, ...]]) -> str:
    if not keys:
        return c.dialect.false_sql
    if len(table.primary_key) == 1:
        name = table.primary_key[0]
        column = table.column_map[name]
        return f"{c.col(alias, name)} IN ({', '.join(c.param(k[0], column) for k in keys)})"
    ors = []
    for key in keys:
        ands = [f"{c.col(alias, n)} = {c.param(v, table.column_map[n])}" for n, v in zip(table.primary_key, key, strict=True)]
        ors.append("(" + " AND ".join(ands) + ")")
    return "(" + " OR ".join(ors) + ")"


def _read(m: _Mutation, db: Database, conn: Any, keys: list[tuple[Any, ...]], count: int) -> dict[str, Any]:
    c = m.new(db.dialect)
    alias = c.alias()
    source = f"FROM {c.dialect.table_ref(m.table)} {alias} WHERE {_keys_filter(c, m.table, alias, keys)}"
    pairs = m.answer_json(c, alias, source, c.param(count))
    check = m.access.check if m.op in ("insert", "update") else {}
    if check:
        checked = c.alias()
        condition = c.where(m.t, checked, check, trusted=True)
        keys_sql = _keys_filter(c, m.table, checked, keys)
        pairs.append(
            (
                "__violations",
                f"(SELECT COUNT(*) FROM {c.dialect.table_ref(m.table)} {checked} "
                f"WHERE {keys_sql} AND NOT COALESCE({condition}, {c.dialect.false_sql}))",
            )
        )
    return _loads(db.execute(conn, f"SELECT {c.dialect.json_object(pairs)}", c.params)[0][0])


def _stepwise(m: _Mutation, db: Database, conn: Any) -> Any:
    ref = m.dialect.table_ref(m.table)
    pk = ", ".join(m.dialect.quote(n) for n in m.table.primary_key)
    with db.transaction(conn):
        if m.op == "insert":
            rows = m.insert_rows()
            keys: list[tuple[Any, ...]] = []
            groups = [rows] if db.dialect.name == "mysql" else _by_columns(rows)
            for group in groups:
                c = m.new(db.dialect)
                target = c.alias() if db.dialect.name == "sqlite" else ""
                alias = f" AS {target}" if target else ""
                conflict = m.conflict(c, target or ref)
                sql = f"INSERT INTO {ref}{alias} {m.values_sql(c, group, _names(group))}{conflict} RETURNING {pk}"
                keys += [tuple(row) for row in db.execute(conn, sql, c.params)]
            return m.finish(_read(m, db, conn, keys, len(keys)))
        c = m.new(db.dialect)
        alias = c.alias()
        lock = " FOR UPDATE" if db.dialect.name == "mysql" else ""
        key = ", ".join(c.col(alias, n) for n in m.table.primary_key)
        select = f"SELECT {key} FROM {ref} {alias} WHERE {m.row_filter(c, alias)}{lock}"
        keys = [tuple(row) for row in db.execute(conn, select, c.params)]
        if m.op == "delete":
            answer = _read(m, db, conn, keys, len(keys))
            if keys:
                c = m.new(db.dialect)
                db.execute(conn, f"DELETE FROM {ref} WHERE {_keys_filter(c, m.table, ref, keys)}", c.params)
            return m.finish(answer)
        c = m.new(db.dialect)
        sets = m.assignments(c)
        if keys:
            db.execute(conn, f"UPDATE {ref} SET {', '.join(sets)} WHERE {_keys_filter(c, m.table, ref, keys)}", c.params)
        return m.finish(_read(m, db, conn, keys, len(keys)))


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they set (SQLite has no DEFAULT in VALUES), in order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())
