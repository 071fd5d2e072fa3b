"""SQLite destination (standard library ``sqlite3``).

The URL is ``sqlite:///path/to/file.db`` (relative to the project folder) or ``sqlite:////abs/path``;
``sqlite://`` or ``sqlite:///:memory:`` is an in-memory database that lives as long as the destination.
Each write opens the file, takes the write lock (``BEGIN IMMEDIATE``, waiting up to ``timeout_s``) and
inserts batch by batch with ``executemany``; SQLite has no bulk-load protocol to use instead.

SQLite has no schemas: ``main.t`` is accepted, ``analytics.t`` is not. Values are stored in SQLite's
own classes: integers and booleans as INTEGER, floats as REAL, strings as TEXT, binary as BLOB,
timestamps as ISO 8601 TEXT (``2024-05-01 12:00:00.000000``, with ``+00:00`` when the Arrow type has a
time zone), dates as ``YYYY-MM-DD``, decimals as TEXT (no precision lost, the scale kept in the text:
``1234.50``), lists, structs and maps as JSON TEXT. INTEGER holds signed 64-bit values: a uint64 value
above 2**63-1 fails the load naming the column. SQLite cannot change a column's type in place, so
``schema_evolution: widen`` rebuilds the table (its indexes are not kept).

Example::

    dest = SQLiteDestination(ConnectionSpec("out", "sqlite:///out.db", origin), root=project.root)
    dest.write("users", reader, mode="replace", key=[], load_id="run-1:1003")
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.destinations.sql import SqlDestination, TableName, quote
from sluice.destinations.types import is_nested
from sluice.errors import TerminalError
from sluice.project.model import ConnectionSpec
from sluice.urls import database_file


def sqlite_type(kind: pa.DataType) -> str:
    """The declared SQLite column type for an Arrow type."""
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return "INTEGER"
    if pa.types.is_floating(kind):
        return "REAL"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "BLOB"
    return "TEXT"


def _python_column(column: pa.Array) -> list[Any]:
    """One Arrow column as Python values sqlite3 binds without adapters."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = pc.cast(column, pa.timestamp(kind.unit))  # UTC wall time
        text: list[Any] = pc.strftime(column, format="%Y-%m-%d %H:%M:%S").to_pylist()
        return text if kind.tz is None else [None if v is None else v + "+00:00" for v in text]
    values: list[Any]
    if pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_decimal(kind):
        values = pc.cast(column, pa.string()).to_pylist()
        return values
    if pa.types.is_boolean(kind):
        values = pc.cast(column, pa.int64()).to_pylist()
        return values
    if pa.types.is_nested(kind):
        return [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()]
    if pa.types.is_duration(kind):
        values = pc.cast(column, pa.int64()).to_pylist()
        return values
    values = column.to_pylist()
    return values


class SQLiteDestination(SqlDestination):
    """Writes Arrow data into an SQLite database file."""

    backend = "SQLite"
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id TEXT NOT NULL, table_name TEXT NOT NULL, rows INTEGER NOT NULL, "
        "loaded_at TEXT NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"

    def __init__(self, connection: ConnectionSpec, root: Path | None = None, timeout_s: float = 30.0) -> None:
        super().__init__(connection, root)
        self.path = database_file(connection.url, root)
        self.timeout_s = timeout_s
        self._memory: sqlite3.Connection | None = None
        self._conn: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def parse_table(self, table: str) -> TableName:
        name = TableName.parse(table)
        if name.schema not in (None, "main"):
            raise TerminalError(
                f"table '{table}' names schema '{name.schema}', but SQLite connection '{self.connection.name}' has no "
                f"schemas; use a plain table name such as '{name.schema}_{name.name}'"
            )
        return name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.path is None:
            if self._memory is None:
                self._memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            conn = self._memory
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        self._conn = conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._conn = None
            if conn is not self._memory:
                conn.close()

    def create_schema(self, schema: str) -> None:
        """Nothing to create: only ``main`` gets here (see :meth:`parse_table`)."""

    def is_transient(self, exc: Exception) -> bool:
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text or "disk i/o" in text)

    # -- statements ----------------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "used outside transaction()"
        return self._conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        self._db().execute(sql, tuple(params))

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._db().execute(sql, tuple(params)).fetchall()

    def insert_select(self, sql: str) -> int:
        return self._db().execute(sql).rowcount

    # -- tables --------------------------------------------------------------------------------------

    def describe(self, name: TableName) -> dict[str, str] | None:
        rows = self.query(f"PRAGMA {quote(name.schema or 'main')}.table_info({quote(name.name)})")
        return {str(row[1]): str(row[2]) for row in rows} or None

    def load_type(self, label: str, field: pa.Field) -> pa.DataType:
        kind = field.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if is_nested(kind) or pa.types.is_decimal(kind):
            return pa.string()  # JSON text; decimals as exact text
        if pa.types.is_uint64(kind):
            return pa.int64()  # checked value by value: a value above 2**63-1 fails naming the column
        return kind

    def expected_columns(self, schema: pa.Schema) -> dict[str, str]:
        return {field.name: sqlite_type(field.type) for field in schema}

    def logical_type(self, sql: str) -> pa.DataType | None:
        # SQLite's affinity rules (https://sqlite.org/datatype3.html#determination_of_column_affinity).
        declared = sql.upper()
        if declared in ("TIMESTAMP", "DATE"):
            return pa.timestamp("us") if declared == "TIMESTAMP" else pa.date32()
        if "INT" in declared:
            return pa.int64()
        if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
            return pa.string()
        if "BLOB" in declared:
            return pa.binary()
        if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
            return pa.float64()
        return None

    def same_sql(self, table: str, data: str) -> bool:
        return table.upper() == data.upper()

    def alter_column_type(self, name: TableName, column: str, sql: str) -> None:
        # No ALTER COLUMN ... TYPE in SQLite: rebuild the table with the new declaration, in this transaction.
        columns = self.describe(name) or {}
        declared = ", ".join(f"{quote(c)} {sql if c == column else kind}" for c, kind in columns.items())
        rebuilt = TableName(name.schema, f"_sluice_widen_{name.name}")
        self.execute(f"CREATE TABLE {rebuilt.sql} ({declared})")
        self.execute(f"INSERT INTO {rebuilt.sql} SELECT * FROM {name.sql}")
        self.execute(f"DROP TABLE {name.sql}")
        self.execute(f"ALTER TABLE {rebuilt.sql} RENAME TO {quote(name.name)}")

    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        self._create(name.sql, schema)

    def _create(self, table_sql: str, schema: pa.Schema) -> None:
        columns = ", ".join(f"{quote(field.name)} {sqlite_type(field.type)}" for field in schema)
        self.execute(f"CREATE TABLE {table_sql} ({columns})")

    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        return self._insert(name.sql, reader)

    def _insert(self, table_sql: str, reader: pa.RecordBatchReader) -> int:
        columns = ", ".join(quote(column) for column in reader.schema.names)
        marks = ", ".join("?" for _ in reader.schema.names)
        sql = f"INSERT INTO {table_sql} ({columns}) VALUES ({marks})"
        rows = 0
        db = self._db()
        for batch in reader:
            if batch.num_rows:
                db.executemany(sql, zip(*(_python_column(column) for column in batch.columns), strict=True))
                rows += batch.num_rows
        return rows

    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        name = TableName("temp", self.stage_name())
        self._create(name.sql, reader.schema)
        self._insert(name.sql, reader)
        # Merge looks rows up by key in the staging table; without an index that is a scan per row.
        if key:
            index = quote(f"{name.name}_key")
            self.execute(f"CREATE INDEX temp.{index} ON {quote(name.name)} ({', '.join(quote(k) for k in key)})")
        return name
