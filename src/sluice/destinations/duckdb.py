"""DuckDB destination: Arrow data scanned natively by DuckDB (``INSERT ... BY NAME SELECT * FROM <reader>``).

The URL is ``duckdb:///path/to/file.duckdb`` (relative to the project folder) or ``duckdb:////abs/path``;
``duckdb://`` or ``duckdb:///:memory:`` is an in-memory database that lives as long as the destination.
A file database is opened for each write and closed after it, so other processes (a worker, a notebook)
can open it in between; a file locked by another process is a TransientError.

Columns take DuckDB's own types for the Arrow data (uint64 -> UBIGINT, decimal(p,s) -> DECIMAL(p,s),
structs and lists -> STRUCT and LIST); float16 loads as FLOAT and decimals wider than 38 digits, which
DuckDB has no type for, are refused naming the column.

Example::

    dest = DuckDBDestination(ConnectionSpec("dw", "duckdb:///dw.duckdb", origin), root=project.root)
    dest.write("analytics.orders", reader, mode="append", key=[], load_id="run-1:1002")
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from sluice.destinations.pipe import pipe_into
from sluice.destinations.sql import SqlDestination, TableName
from sluice.errors import TerminalError
from sluice.project.model import ConnectionSpec
from sluice.urls import database_file

_file_locks: dict[Path, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    """One lock per database file in this process: DuckDB refuses a second handle on an attached file."""
    with _file_locks_guard:
        return _file_locks.setdefault(path.resolve(), threading.Lock())


class DuckDBDestination(SqlDestination):
    """Writes Arrow data into a DuckDB database file."""

    backend = "DuckDB"
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id VARCHAR NOT NULL, table_name VARCHAR NOT NULL, rows BIGINT NOT NULL, "
        "loaded_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "now()"

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        super().__init__(connection, root)
        self.path = database_file(connection.url, root)
        self._memory: Any = None
        self._conn: Any = None
        self._views = 0

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        import duckdb

        held: threading.Lock | None = None
        if self.path is None:
            if self._memory is None:
                self._memory = duckdb.connect(":memory:")
            conn = self._memory
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            held = _file_lock(self.path)
            held.acquire()
            try:
                conn = duckdb.connect(str(self.path))
            except BaseException:
                held.release()
                raise
        self._conn = conn
        try:
            conn.begin()
            try:
                yield
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
        finally:
            self._conn = None
            if conn is not self._memory:
                conn.close()
            if held is not None:
                held.release()

    def is_transient(self, exc: Exception) -> bool:
        import duckdb

        # IOException covers "Could not set lock on file"; TransactionException a write-write conflict.
        transient = (duckdb.IOException, duckdb.TransactionException, duckdb.InterruptException, duckdb.ConnectionException)
        return isinstance(exc, transient)

    # -- statements ----------------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self._conn.execute(sql, list(params))

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self._conn.execute(sql, list(params)).fetchall())

    def insert_select(self, sql: str) -> int:
        return int(self._conn.execute(sql).fetchone()[0])

    # -- tables --------------------------------------------------------------------------------------

    def describe(self, name: TableName) -> dict[str, str] | None:
        rows = self.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position",
            (name.schema or "main", name.name),
        )
        return {str(column): str(kind) for column, kind in rows} or None

    def load_type(self, label: str, field: pa.Field) -> pa.DataType:
        kind = field.type
        if pa.types.is_float16(kind):
            return pa.float32()
        if pa.types.is_decimal256(kind):
            if kind.precision > 38:
                raise TerminalError(
                    f"table '{label}' column '{field.name}' is decimal({kind.precision},{kind.scale}), but DuckDB decimals "
                    "hold at most 38 digits; cast the column in the object to a narrower decimal or to a string"
                )
            return pa.decimal128(kind.precision, kind.scale)
        return kind

    def table_types(self, name: TableName, columns: dict[str, str]) -> dict[str, pa.DataType | None]:
        schema = self._conn.sql(f"SELECT * FROM {name.sql} LIMIT 0").to_arrow_table().schema
        return {field.name: field.type for field in schema}

    def expected_columns(self, schema: pa.Schema) -> dict[str, str]:
        with self._view(pa.RecordBatchReader.from_batches(schema, [])) as view:
            rows = self.query(f"DESCRIBE SELECT * FROM {view}")
        return {str(row[0]): str(row[1]) for row in rows}

    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        with self._view(pa.RecordBatchReader.from_batches(schema, [])) as view:
            self.execute(f"CREATE TABLE {name.sql} AS SELECT * FROM {view}")

    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        return pipe_into(reader, lambda batches: self._insert_from(name, batches))

    def _insert_from(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        with self._view(reader) as view:
            return self.insert_select(f"INSERT INTO {name.sql} BY NAME SELECT * FROM {view}")

    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        name = TableName(None, self.stage_name())
        pipe_into(reader, lambda batches: self._create_from(name, batches))
        return name

    def _create_from(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        with self._view(reader) as view:
            self.execute(f"CREATE TEMP TABLE {name.sql} AS SELECT * FROM {view}")
        return 0

    @contextlib.contextmanager
    def _view(self, data: pa.RecordBatchReader) -> Iterator[str]:
        """Expose ``data`` to SQL under a fresh name (DuckDB scans Arrow streams without copying).

        DuckDB pulls batches from its own worker threads, so source readers reach it through
        :func:`pipe_into`, which keeps reading the source on the calling thread.
        """
        self._views += 1
        view = f"_sluice_arrow_{self._views}"
        self._conn.register(view, data)
        try:
            yield view
        finally:
            self._conn.unregister(view)
