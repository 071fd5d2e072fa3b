"""PostgreSQL destination: bulk loads with binary COPY through ADBC (``adbc_driver_postgresql``).

Rows travel as Arrow batches into ``COPY ... FROM STDIN (FORMAT binary)``, never as row-by-row INSERTs;
DDL, merge SQL and the ``_sluice_loads`` bookkeeping run on the same connection and transaction.
Tables are created from the Arrow schema (int64 -> bigint, float64 -> double precision, string -> text,
bool -> boolean, timestamp -> timestamp [with time zone], date32 -> date, decimal -> numeric,
binary -> bytea); ``schema.table`` names create the schema when missing.

Example::

    dest = PostgresDestination(ConnectionSpec("dw", "postgresql://app@db:5432/dw", origin))
    dest.write("analytics.dim_users", reader, mode="merge", key=["user_id"], load_id="run-1:1001")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from sluice.destinations.pipe import pipe_into
from sluice.destinations.sql import SqlDestination, TableName, redact
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec
from sluice.urls import libpq_url

# SQLSTATE classes a retry can get past: connection exceptions, transaction rollbacks (deadlock,
# serialization), insufficient resources, operator intervention (shutdown), lock not available.
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "55P03", "58")


def _base_type(kind: str) -> str:
    """A PostgreSQL type name without modifiers, character types folded into text."""
    base = kind.split("(", 1)[0].strip()
    return "text" if base in ("character varying", "character", "varchar", "char", "bpchar", "name") else base


class PostgresDestination(SqlDestination):
    """Writes Arrow data into PostgreSQL tables with binary COPY."""

    backend = "PostgreSQL"
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id text NOT NULL, table_name text NOT NULL, rows bigint NOT NULL, "
        "loaded_at timestamptz NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "now()"

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        super().__init__(connection, root)
        self._url = libpq_url(connection.url)
        self._conn: Any = None
        self._loads_ready = False
        self._expected: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- connection ----------------------------------------------------------------------------------

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
            super().ensure_loads_table()
            self._loads_ready = True

    # -- tables --------------------------------------------------------------------------------------

    def describe(self, name: TableName) -> dict[str, str] | None:
        rows = self.query("SELECT to_regclass($1)::oid", (name.sql,))
        if rows[0][0] is None:
            return None
        return self._columns(int(rows[0][0]))

    def _columns(self, oid: int) -> dict[str, str]:
        rows = self.query(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
        return {str(column): str(kind) for column, kind in rows}

    def expected_columns(self, schema: pa.Schema) -> dict[str, str]:
        # Ask the driver: create an empty temporary table from the schema and read its column types.
        signature = tuple((field.name, str(field.type)) for field in schema)
        if signature not in self._expected:
            self._expected[signature] = self._probe(schema)
        return dict(self._expected[signature])

    def _probe(self, schema: pa.Schema) -> dict[str, str]:
        probe = TableName(None, self.stage_name())
        self._ingest(probe, pa.RecordBatchReader.from_batches(schema, []), "create", temporary=True)
        oid = self.query("SELECT to_regclass($1)::oid", (f"pg_temp.{probe.sql}",))[0][0]
        columns = self._columns(int(oid))
        self.execute(f"DROP TABLE pg_temp.{probe.sql}")
        return columns

    def check_types(self, label: str, schema: pa.Schema, columns: dict[str, str]) -> None:
        # Binary COPY needs each column's type to match the data's exactly, up to modifiers such as
        # varchar(20) or numeric(10,2); report a mismatch by name instead of as a protocol error.
        expected = self.expected_columns(schema)
        wrong = [
            f"'{column}' is {columns[column]} in the table but {kind} in the data"
            for column, kind in expected.items()
            if _base_type(columns[column]) != _base_type(kind)
        ]
        if wrong:
            raise TerminalError(
                f"cannot append to table '{label}': column {'; column '.join(wrong)}. Cast the columns in the object "
                "to the table's types, or write with mode 'replace' to recreate the table"
            )

    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        self._ingest(name, pa.RecordBatchReader.from_batches(schema, []), "create")

    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        # COPY runs in a helper thread while this one reads the source (see pipe.py): decoding the
        # source and encoding COPY overlap, and ~1 MiB slices keep the server busy from the first rows.
        return pipe_into(reader, lambda batches: self._ingest(name, batches, "append"))

    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        name = TableName(None, self.stage_name())
        pipe_into(reader, lambda batches: self._ingest(name, batches, "create", temporary=True))
        return TableName("pg_temp", name.name)

    def truncate(self, name: TableName) -> None:
        self.execute(f"TRUNCATE TABLE {name.sql}")

    def _ingest(self, name: TableName, reader: pa.RecordBatchReader, mode: str, temporary: bool = False) -> int:
        with contextlib.closing(self._conn.cursor()) as cur:
            rows = cur.adbc_ingest(name.name, reader, mode=mode, db_schema_name=name.schema, temporary=temporary)
        return int(rows) if rows is not None and rows >= 0 else 0
