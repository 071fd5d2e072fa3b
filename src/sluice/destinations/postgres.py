"""PostgreSQL destination: bulk loads with binary COPY through ADBC (``adbc_driver_postgresql``).

Rows travel as Arrow batches into ``COPY ... FROM STDIN (FORMAT binary)``, never as row-by-row INSERTs;
DDL, merge SQL and the ``_sluice_loads`` bookkeeping run on the same connection and transaction.
Tables are created from the Arrow schema (docs/destinations.md has the whole mapping): int64 -> bigint,
uint64 -> numeric(20,0) (every value fits; bigint would wrap), float64 -> double precision, string ->
text, bool -> boolean, timestamp -> timestamp [with time zone], date32 -> date, decimal(p,s) ->
numeric(p,s), binary -> bytea, structs, lists and maps -> jsonb. ``schema.table`` names create the schema
when missing; loads creating the same schema or table at once take turns (a transaction-scoped
advisory lock) instead of failing on the catalog's unique index. Names longer than 63 bytes are refused.

Example::

    dest = PostgresDestination(ConnectionSpec("dw", "postgresql://app@db:5432/dw", origin))
    dest.write("analytics.dim_users", reader, mode="merge", key=["user_id"], load_id="run-1:1001")
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.destinations.pipe import pipe_into
from sluice.destinations.sql import LOADS_TABLE, LoadedRows, SqlDestination, TableName, as_reader, quote, redact
from sluice.destinations.types import JSON, int_digits, is_nested
from sluice.destinations.warehouse import WarehouseLoad
from sluice.destinations.warehouse_options import POSTGRES_NAME_BYTES, PostgresDestinationSpec
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, DestinationSpec, SchemaEvolution, WriteMode
from sluice.urls import libpq_url

log = logging.getLogger("sluice.destinations")

# SQLSTATE classes a retry can get past: connection exceptions (08: reset, refused), transaction
# rollbacks (40001 serialization failure, 40P01 deadlock), insufficient resources (53), operator
# intervention (57P01 admin shutdown, 57014 cancelled by statement_timeout), lock not available (55P03),
# object in use (55006), system errors (58: I/O).
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "55P03", "55006", "58")

# An unconstrained ``numeric`` column holds any integer or decimal exactly.
ANY_NUMERIC = pa.decimal256(76, 38)

_SCALARS: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "time without time zone": pa.time64("us"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "interval": pa.duration("us"),
    "jsonb": JSON,
    "json": JSON,
}


def _base_type(kind: str) -> str:
    """A PostgreSQL type name without modifiers, character types folded into text."""
    base = re.sub(r"\([^)]*\)", "", kind).strip()
    base = " ".join(base.split())
    return "text" if base in ("character varying", "character", "varchar", "char", "bpchar", "name") else base


def pg_type(kind: pa.DataType) -> str:
    """The column type created for a load type (see :meth:`PostgresDestination.load_type`), as format_type spells it."""
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "timestamp with time zone" if kind.tz is not None else "timestamp without time zone"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return "text"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "bytea"
    if pa.types.is_time(kind):
        return "time without time zone"
    if pa.types.is_duration(kind):
        return "interval"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pg_type(kind.value_type) + "[]"
    for name, known in _SCALARS.items():
        if kind == known:
            return name
    raise ValueError(str(kind))


def pg_logical_type(sql: str) -> pa.DataType | None:
    """The Arrow type a column declared ``sql`` (format_type's spelling) holds, or None."""
    if sql.endswith("[]"):
        element = pg_logical_type(sql[:-2])
        return None if element is None else pa.list_(element)
    match = re.fullmatch(r"numeric(?:\((\d+),(-?\d+)\))?", sql.replace(" ", ""))
    if match:
        if match.group(1) is None:
            return ANY_NUMERIC
        precision, scale = int(match.group(1)), int(match.group(2))
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(min(precision, 76), scale)
    return _SCALARS.get(_base_type(sql))


def _for_copy(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """JSON columns as jsonb's binary COPY form: a version byte (1) and the JSON text."""
    positions = [i for i, field in enumerate(reader.schema) if field.type == JSON]
    if not positions:
        return reader
    schema = reader.schema
    for i in positions:
        schema = schema.set(i, schema.field(i).with_type(pa.binary()))
    version = pa.scalar(b"\x01", pa.binary())

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            columns = list(batch.columns)
            for i in positions:
                text = columns[i].storage.cast(pa.binary())
                columns[i] = pc.binary_join_element_wise(version, text, pa.scalar(b"", pa.binary()))
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


CHECK_SAVEPOINT = frozenset({"SAVEPOINT sluice_check", "RELEASE SAVEPOINT sluice_check", "ROLLBACK TO SAVEPOINT sluice_check"})
"""The statements a check's own savepoint takes (``CheckRunner.run``): :meth:`PostgresDestination.fetch` runs them as
they are, not in a subtransaction."""
_TRY_TABLE = "sluice_check_rows"
_TRY_FUNCTION = f"""CREATE OR REPLACE FUNCTION pg_temp.sluice_try_check(statement text, keep boolean) RETURNS text
LANGUAGE plpgsql AS $sluice$
BEGIN
    IF keep THEN
        EXECUTE 'DROP TABLE IF EXISTS pg_temp.{_TRY_TABLE}';
        EXECUTE 'CREATE TEMPORARY TABLE {_TRY_TABLE} ON COMMIT DROP AS ' || statement;
    ELSE
        EXECUTE statement;
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END
$sluice$"""
"""Runs a check's statement in a subtransaction (the exception block): a query's rows into a temporary table, or its
error message returned (the block rolled back), so a failing one leaves the load's transaction usable (:meth:`fetch`)."""


class CheckQueryError(TerminalError):
    """A check's query failed inside a load's transaction (rolled back to its own subtransaction): the server's message."""


class PostgresDestination(SqlDestination):
    """Writes Arrow data into PostgreSQL tables with binary COPY."""

    backend = "PostgreSQL"
    max_identifier_bytes = POSTGRES_NAME_BYTES
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id text NOT NULL, table_name text NOT NULL, rows bigint NOT NULL, "
        "loaded_at timestamptz NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "now()"
    connects_ahead = True

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        super().__init__(connection, root)
        self._url = libpq_url(connection.url)
        self._conn: Any = None
        self._loads_ready = False
        self._load: WarehouseLoad | None = None  # the warehouse options of the write under way
        self._write_lock = threading.Lock()

    def write(
        self,
        table: str,
        data: pa.RecordBatchReader,
        mode: WriteMode,
        key: Sequence[str],
        load_id: str,
        schema_evolution: SchemaEvolution = "strict",
        options: DestinationSpec | None = None,
        before_commit: Callable[[LoadedRows], None] | None = None,
        keep_load: bool = False,
    ) -> int:
        """The shared write flow (``before_commit``, ``keep_load``: see :meth:`SqlDestination.write`; it may
        :meth:`fetch`), plus the warehouse options of a :class:`PostgresDestinationSpec` (see warehouse.py).

        The options are checked against the data's schema before the database is touched (TerminalError
        naming the table and the column); ANALYZE runs after the load commits, when it wrote at least
        ``analyze_min_rows`` rows (a failed ANALYZE is logged, the load stands).
        """
        if not isinstance(options, PostgresDestinationSpec):
            return super().write(
                table, data, mode, key, load_id, schema_evolution, before_commit=before_commit, keep_load=keep_load
            )
        reader = as_reader(data)
        load = WarehouseLoad(options, table, reader.schema, mode, tuple(key))
        with self._write_lock:
            self._load = load
            try:
                rows = super().write(
                    table, reader, mode, key, load_id, schema_evolution, before_commit=before_commit, keep_load=keep_load
                )
            finally:
                self._load = None
            self._analyze(table, load.analyze_targets(self.parse_table(table), rows))
        return rows

    def fetch(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` inside the write under way (from its ``before_commit``): its column names and rows.

        A statement that fails must not abort the load's transaction: the ADBC driver then refuses every statement,
        even ``ROLLBACK TO SAVEPOINT``, so a client-side savepoint cannot undo it. Each statement therefore runs in a
        subtransaction on the server, a PL/pgSQL block with an exception handler (:data:`_TRY_FUNCTION`, an implicit
        savepoint): a query (``SELECT``, ``WITH``, ``VALUES``) keeps its rows in a temporary table read back here
        and dropped; a statement that fails is rolled back to the block's start and its error raised here as
        :class:`CheckQueryError`, the server's one-line message; the transaction stays usable. The statements of
        :data:`CHECK_SAVEPOINT` (each check's own savepoint: ``CheckRunner.run``) run as they are; any other
        transaction command fails (PL/pgSQL refuses it), so a check cannot end or roll back the load's transaction.
        """
        conn = self._connect()
        head = sql.lstrip().lstrip("(").lstrip().split(None, 1)
        verb = head[0].lower() if head else ""
        with contextlib.closing(conn.cursor()) as cursor:
            if " ".join(sql.split()) in CHECK_SAVEPOINT:
                cursor.execute(sql)
                return [], []
            keep = verb in ("select", "with", "values")
            cursor.execute(_TRY_FUNCTION)
            cursor.execute("SELECT pg_temp.sluice_try_check($1, $2)", (sql, keep))
            row = cursor.fetchone()
            error = None if row is None or row[0] is None else " ".join(str(row[0]).split())
            if error is not None:
                if keep and "specified more than once" in error:  # CREATE TABLE AS wants distinct column names
                    error += "; give each column of the check's query a name of its own (AS ...)"
                raise CheckQueryError(error)
            if not keep:
                return [], []
            try:
                cursor.execute(f"SELECT * FROM pg_temp.{_TRY_TABLE}")
                names = [d[0] for d in cursor.description or []]
                rows = [tuple(row) for row in cursor.fetchall()]
            finally:
                cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{_TRY_TABLE}")
            return names, rows

    def _analyze(self, label: str, targets: list[TableName]) -> None:
        if not targets:
            return
        try:
            with self._lock, self.transaction():
                for target in targets:
                    self.execute(f"ANALYZE {target.sql}")
        except Exception as exc:
            log.warning("ANALYZE after the load of table '%s' failed (the load is committed): %s", label, exc)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- connection ----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the ADBC connection now (a run does it while it plans: :mod:`sluice.destinations.warm`); raises
        TransientError when the server cannot be reached."""
        with self._lock:
            self._connect()

    def _connect(self) -> Any:
        if self._conn is None:
            import adbc_driver_manager
            import adbc_driver_postgresql.dbapi

            try:
                self._conn = adbc_driver_postgresql.dbapi.connect(self._url)
            except adbc_driver_manager.Error as exc:
                detail = " ".join(str(exc).split())
                raise TransientError(
                    f"cannot connect to PostgreSQL connection '{self.connection.name}' at {redact(self._url)}: {detail}; "
                    "check that the server is running and the URL is right"
                ) from exc
            self._loads_ready = False
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._connect()
        try:
            yield
            # An aborted transaction's COMMIT is a ROLLBACK that reports no error: make sure this one is not aborted
            # (the driver refuses any statement in an aborted transaction), so a load that did not commit is never
            # reported as loaded.
            try:
                with contextlib.closing(conn.cursor()) as cursor:
                    cursor.execute("SELECT 1")
            except Exception as exc:
                raise TerminalError(
                    f"the transaction on PostgreSQL connection '{self.connection.name}' was aborted by a statement whose "
                    f"error was caught, so it cannot commit and nothing was written ({' '.join(str(exc).split())}); "
                    "let that error through, or run the query with fetch (its own subtransaction)"
                ) from exc
            conn.commit()
        except BaseException as exc:
            self._loads_ready = False  # the rollback may have undone its creation
            try:
                conn.rollback()
            except Exception:
                self.close()
            else:
                if isinstance(exc, Exception) and self.is_transient(exc):
                    self.close()
            raise

    def is_transient(self, exc: Exception) -> bool:
        import adbc_driver_manager

        sqlstate = getattr(exc, "sqlstate", None) or ""
        if sqlstate:
            # 08P01 (protocol violation) is what the server says when COPY data does not fit a column.
            return sqlstate.startswith(_TRANSIENT_SQLSTATES) and sqlstate != "08P01"
        return isinstance(exc, adbc_driver_manager.OperationalError)

    # -- statements ----------------------------------------------------------------------------------

    def ph(self, position: int) -> str:
        return f"${position}"

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        with contextlib.closing(self._conn.cursor()) as cur:
            cur.execute(sql, tuple(params) or None)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self._conn.cursor()) as cur:
            cur.execute(sql, tuple(params) or None)
            return list(cur.fetchall())

    def insert_select(self, sql: str) -> int:
        rows = self.query(f"WITH ins AS ({sql} RETURNING 1) SELECT count(*) FROM ins")
        return int(rows[0][0])

    def ensure_loads_table(self) -> None:
        # CREATE TABLE IF NOT EXISTS still locks the catalog; skip it once this connection has made sure.
        if not self._loads_ready:
            loads = TableName(None, LOADS_TABLE)
            if self._oid(loads) is None:
                self.lock_ddl(f"table:{loads}")
                if self._oid(loads) is None:
                    super().ensure_loads_table()
            self._loads_ready = True

    def lock_ddl(self, what: str) -> None:
        # Two loads creating the same schema or table at once: the second would wait on the catalog's
        # unique index and then fail with 23505 (or 42P07). Take turns instead: the lock ends with the
        # transaction, after which the second load sees what the first created. Existence is checked
        # with plain queries on the catalogs (this statement's snapshot), not to_regclass or IF NOT
        # EXISTS, whose catalog caches may not have seen the other transaction's commit yet.
        self.query("SELECT true FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS l", (f"sluice:ddl:{what}",))

    def create_schema(self, schema: str) -> None:
        exists = "SELECT true FROM pg_namespace WHERE nspname = $1"
        if not self.query(exists, (schema,)):
            self.lock_ddl(f"schema:{schema}")
            if not self.query(exists, (schema,)):
                self.execute(f"CREATE SCHEMA {quote(schema)}")

    # -- tables --------------------------------------------------------------------------------------

    def _oid(self, name: TableName) -> int | None:
        """The table's oid (an unqualified name in the current schema, where CREATE TABLE puts it), or None."""
        rows = self.query(
            "SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE c.relname = $1 AND n.nspname = coalesce($2, current_schema()) AND c.relkind IN ('r', 'p')",
            (name.name, name.schema),
        )
        return int(rows[0][0]) if rows else None

    def describe(self, name: TableName) -> dict[str, str] | None:
        oid = self._oid(name)
        return None if oid is None else self._columns(oid)

    def _columns(self, oid: int) -> dict[str, str]:
        rows = self.query(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
        return {str(column): str(kind) for column, kind in rows}

    def load_type(self, label: str, field: pa.Field) -> pa.DataType:
        kind = field.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if is_nested(kind):
            return JSON
        if pa.types.is_unsigned_integer(kind):
            # uint64 does not fit bigint: numeric(20,0) holds every value (bigint would wrap 2**63 to negative).
            return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}.get(kind.bit_width, pa.decimal128(int_digits(kind), 0))
        if pa.types.is_int8(kind):
            return pa.int16()
        if pa.types.is_float16(kind):
            return pa.float32()
        if pa.types.is_date64(kind):
            return pa.date32()
        try:
            pg_type(kind)
        except ValueError:
            raise TerminalError(
                f"table '{label}' column '{field.name}' has Arrow type {kind}, which the PostgreSQL destination cannot "
                "store; cast it in the object (e.g. to a string)"
            ) from None
        return kind

    def expected_columns(self, schema: pa.Schema) -> dict[str, str]:
        return {field.name: pg_type(field.type) for field in schema}

    def logical_type(self, sql: str) -> pa.DataType | None:
        return pg_logical_type(sql)

    def same_sql(self, table: str, data: str) -> bool:
        # Binary COPY needs the base type to match (varchar(20) takes text); a numeric's precision and
        # scale count, because numeric(10,2) would round numeric(18,6) data.
        if table.startswith("numeric") or data.startswith("numeric"):
            return table.replace(" ", "") == data.replace(" ", "")
        return _base_type(table) == _base_type(data)

    def cast_target(self, data: pa.DataType, held: pa.DataType) -> pa.DataType:
        if held == ANY_NUMERIC:
            return data if pa.types.is_decimal(data) else pa.decimal128(int_digits(data), 0)
        return held

    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        if self._load is not None:
            self._load.create(self, name, self._columns_ddl(schema))
        else:
            self.execute(f"CREATE TABLE {name.sql} ({self._columns_ddl(schema)})")

    def reuse_layout(self, name: TableName, mode: str) -> bool:
        return True if self._load is None else self._load.check_layout(self, name, mode)

    def complete_table(self, name: TableName) -> None:
        if self._load is not None:
            self._load.complete(self, name)

    def merge_filter(self, name: TableName) -> str:
        return "" if self._load is None else self._load.merge_filter("t")

    def before_merge(self, name: TableName, stage: TableName) -> None:
        if self._load is not None:
            self._load.loaded = True
            if self._load.partitioned:
                self._load.partitions_from_stage(self, name, stage)

    def _columns_ddl(self, schema: pa.Schema) -> str:
        return ", ".join(f"{quote(field.name)} {pg_type(field.type)}" for field in schema)

    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        # COPY runs in a helper thread while this one reads the source (see pipe.py): decoding the
        # source and encoding COPY overlap, and ~1 MiB slices keep the server busy from the first rows.
        load = self._load
        if load is not None:
            load.loaded = True
            if load.partitioned:
                return load.insert(self, name, reader, lambda part: self._copy(name, part))
        return self._copy(name, reader)

    def _copy(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        return pipe_into(_for_copy(reader), lambda batches: self._ingest(name, batches, "append"))

    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        name = TableName(None, self.stage_name())
        self.execute(f"CREATE TEMPORARY TABLE {name.sql} ({self._columns_ddl(reader.schema)})")
        pipe_into(_for_copy(reader), lambda batches: self._ingest(name, batches, "append", temporary=True))
        return TableName("pg_temp", name.name)

    def truncate(self, name: TableName) -> None:
        self.execute(f"TRUNCATE TABLE {name.sql}")

    def _ingest(self, name: TableName, reader: pa.RecordBatchReader, mode: str, temporary: bool = False) -> int:
        with contextlib.closing(self._conn.cursor()) as cur:
            rows = cur.adbc_ingest(name.name, reader, mode=mode, db_schema_name=name.schema, temporary=temporary)
        return int(rows) if rows is not None and rows >= 0 else 0
