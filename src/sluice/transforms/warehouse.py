"""``engine: warehouse``: a SQL model pushed down into PostgreSQL; no row passes through Sluice.

The model's SQL (written in ``postgres`` unless its ``dialect`` says otherwise; sqlglot translates it)
runs inside the warehouse over its parents' tables: objects' destination tables on the model's
connection, other warehouse models' tables and declared sources. Each materialisation is one
transaction (dbt-postgres does the same in its materialisations, https://docs.getdbt.com/docs/build/materializations):

- ``table``: ``CREATE TABLE <name>__sluice_new AS <query>``, drop the old table (``CASCADE``: views on it
  are rebuilt when they run, later in the same run) and rename the new one; rows counted: the query's;
- ``view``: ``DROP VIEW IF EXISTS ... CASCADE`` then ``CREATE VIEW``; rows counted: 0;
- ``incremental``: the first run is a ``table`` plus a unique index on ``unique_key``; later runs
  (the table exists) run the ``is_incremental()`` form, with ``{{ this }}`` the table itself, into a
  temporary table, add any new column to the table, and ``INSERT ... ON CONFLICT (unique_key) DO
  UPDATE`` every column; rows counted: inserted plus updated. The query must not return a key twice.

Connection failures are TransientErrors (retried); SQL errors TerminalErrors quoting PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from sluice.destinations.sql import TableName, quote
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ObjectSpec
from sluice.project.model_spec import ModelSpec
from sluice.project.model_sql import THIS
from sluice.transforms.models import Materialized, ModelEngine, model_of, rewrite
from sluice.urls import libpq_url


def warehouse_names(objects: Mapping[int, ObjectSpec], model: ModelSpec) -> dict[str, str]:
    """Each table reference of ``model`` bound to its warehouse table (``schema.table`` or ``table``)."""
    names: dict[str, str] = dict(model.sources)
    for ref, parent_id in model.parents:
        parent = objects.get(parent_id)
        if parent is None:
            continue
        if parent.model is not None and parent.model.target is not None:
            names[ref] = parent.model.target
        elif parent.destination is not None:
            names[ref] = parent.destination.table
    if model.target is not None:
        names[THIS] = model.target
    return names


def _qualified(name: TableName) -> str:
    return f"{quote(name.schema)}.{quote(name.name)}" if name.schema else quote(name.name)


class WarehouseEngine(ModelEngine):
    """Runs models inside their PostgreSQL connection; see the module's docs."""

    def input_fingerprint(self, obj: ObjectSpec) -> str | None:
        """None (unknown: run every time) for a model reading declared sources, tables Sluice does not
        write; "" otherwise (its parents' outputs and its definition decide)."""
        return None if obj.model is not None and obj.model.sources else ""

    def materialize(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> Materialized:
        model = model_of(obj, object_label)
        assert model.connection is not None and model.target is not None
        target = TableName.parse(model.target)
        names = warehouse_names(self.project.objects, model)
        label = f"{object_label} ({model.path})"
        with self._transaction(model.connection, label) as cur:
            if target.schema:
                _create_schema(cur, target.schema)
            kind = _relkind(cur, target)
            incremental = model.materialized == "incremental" and kind in ("r", "p")
            sql = rewrite(model, model.sql(incremental), names, write="postgres", object_label=object_label)
            if model.materialized == "view":
                _drop(cur, target, kind)
                cur.execute(f"CREATE VIEW {_qualified(target)} AS {sql}")
                rows = 0
            elif incremental:
                rows = _merge(cur, target, sql, model.unique_key)
            else:
                rows = _replace(cur, target, sql, kind)
                if model.materialized == "incremental":
                    _unique_index(cur, target, model.unique_key)
        return Materialized(None, rows=rows, target=model.target)

    @contextlib.contextmanager
    def _transaction(self, connection: str, label: str) -> Iterator[Any]:
        import psycopg

        spec = self.project.connections[connection]
        try:
            conn = psycopg.connect(libpq_url(spec.url))
        except psycopg.OperationalError as exc:
            raise TransientError(f"{label}: cannot connect to warehouse connection '{connection}': {exc}".strip()) from exc
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            raise TransientError(f"{label}: the warehouse failed: {' '.join(str(exc).split())}") from exc
        except psycopg.Error as exc:
            hint = ""
            if "cannot affect row a second time" in str(exc):
                hint = "; the incremental query returns a unique_key twice: keep one row per key"
            raise TerminalError(f"{label}: warehouse SQL failed: {' '.join(str(exc).split())}{hint}") from exc
        finally:
            conn.close()


def _create_schema(cur: Any, schema: str) -> None:
    """Create ``schema`` when missing; models (and loads) creating it at once take turns, as destinations do
    (the same transaction-scoped advisory lock as :meth:`PostgresDestination.lock_ddl`)."""
    exists = "SELECT true FROM pg_namespace WHERE nspname = %s"
    if cur.execute(exists, (schema,)).fetchone() is None:
        cur.execute(
            "SELECT true FROM (SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))) AS l", (f"sluice:ddl:schema:{schema}",)
        )
        if cur.execute(exists, (schema,)).fetchone() is None:
            cur.execute(f"CREATE SCHEMA {quote(schema)}")


def _relkind(cur: Any, name: TableName) -> str | None:
    """``r`` (table), ``p`` (partitioned table), ``v`` (view)... of ``name``, or None when there is none."""
    cur.execute(
        "SELECT c.relkind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema())",
        (name.name, name.schema),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def _drop(cur: Any, name: TableName, kind: str | None) -> None:
    if kind in ("v", "m"):
        cur.execute(f"DROP {'MATERIALIZED ' if kind == 'm' else ''}VIEW {_qualified(name)} CASCADE")
    elif kind is not None:
        cur.execute(f"DROP TABLE {_qualified(name)} CASCADE")


def _replace(cur: Any, target: TableName, sql: str, kind: str | None) -> int:
    new = TableName(target.schema, f"{target.name}__sluice_new"[:63])
    cur.execute(f"DROP TABLE IF EXISTS {_qualified(new)}")
    cur.execute(f"CREATE TABLE {_qualified(new)} AS {sql}")
    rows = int(cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0)
    _drop(cur, target, kind)
    cur.execute(f"ALTER TABLE {_qualified(new)} RENAME TO {quote(target.name)}")
    return rows


def _unique_index(cur: Any, target: TableName, key: tuple[str, ...]) -> None:
    index = quote(f"{target.name}__sluice_key"[:63])
    cur.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {_qualified(target)} ({', '.join(quote(k) for k in key)})")


def _columns(cur: Any, table: str) -> dict[str, str]:
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    )
    return {str(name): str(kind) for name, kind in cur.fetchall()}


def _merge(cur: Any, target: TableName, sql: str, key: tuple[str, ...]) -> int:
    cur.execute(f"CREATE TEMPORARY TABLE _sluice_new ON COMMIT DROP AS {sql}")
    new = _columns(cur, "pg_temp._sluice_new")
    held = _columns(cur, _qualified(target))
    missing = [k for k in key if k not in new]
    if missing:
        raise TerminalError(f"the incremental query returns no unique_key column {', '.join(missing)}; select it")
    for column, kind in new.items():
        if column not in held:
            cur.execute(f"ALTER TABLE {_qualified(target)} ADD COLUMN {quote(column)} {kind}")
    _unique_index(cur, target, key)
    columns = ", ".join(quote(c) for c in new)
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in new if c not in key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    cur.execute(
        f"INSERT INTO {_qualified(target)} ({columns}) SELECT {columns} FROM _sluice_new "
        f"ON CONFLICT ({', '.join(quote(k) for k in key)}) {action}"
    )
    return int(cur.rowcount if cur.rowcount is not None and cur.rowcount >= 0 else 0)
