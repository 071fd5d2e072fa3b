"""The write flow shared by the SQL destinations (PostgreSQL, DuckDB, SQLite).

A backend module supplies connections, SQL execution and its bulk-load path; this module decides what
runs, so every backend has the same semantics. One write is one transaction, bookkeeping included:

- ``append``: create the table from the Arrow schema if missing, then bulk-load into it. The load is
  recorded in ``_sluice_loads`` (``load_id``, ``table_name``, ``rows``, ``loaded_at``); a ``load_id``
  already recorded for the table is not loaded again and its recorded row count is returned.
- ``replace``: empty the table and load it when its columns and types match the data, else drop it and
  create it from the data. Readers see the old rows until the transaction commits.
- ``merge``: load into a temporary staging table, keep the last row of each key, delete the target rows
  whose key is staged and insert the staged rows. Running the same merge twice leaves the same rows.

Example::

    dest = open_destination(ConnectionSpec("dw", "duckdb:///dw.duckdb", origin), root=project.root)
    dest.write("analytics.users", reader, mode="merge", key=["id"], load_id="run-1:1001")
"""

from __future__ import annotations

import re
import threading
import uuid
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.destinations.base import Destination
from sluice.errors import ObjectError, SluiceError, TerminalError, TransientError, did_you_mean
from sluice.project.model import WRITE_MODES, ConnectionSpec, WriteMode

LOADS_TABLE = "_sluice_loads"
ORD_COLUMN = "_sluice_ord"


def quote(identifier: str) -> str:
    """``identifier`` as a double-quoted SQL identifier (PostgreSQL, DuckDB and SQLite agree)."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class TableName:
    """A table name, optionally schema-qualified: ``"analytics.dim_users"`` or ``"users"``."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, table: str) -> TableName:
        """Split on dots outside double quotes; a part wrapped in double quotes is unquoted (``""`` is ``"``)."""
        parts: list[str] = []
        current, quoted = "", False
        for char in table:
            if char == '"':
                quoted = not quoted
            if char == "." and not quoted:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
        names = [_unquote(part.strip()) for part in parts]
        if len(names) > 2 or not all(names):
            raise TerminalError(f"table name '{table}' is not valid; use 'table' or 'schema.table'")
        return cls(names[0], names[1]) if len(names) == 2 else cls(None, names[0])

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}" if self.schema else quote(self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    return part


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def as_reader(data: pa.RecordBatchReader | pa.Table | pa.RecordBatch) -> pa.RecordBatchReader:
    """Accept a reader, a table or a single batch as a reader."""
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatchReader.from_batches(data.schema, [data])
    return data.to_reader()


def without_null_type(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with columns of Arrow type ``null`` (all values missing, no type known) typed as strings."""
    if not any(pa.types.is_null(field.type) for field in reader.schema):
        return reader
    schema = pa.schema([field.with_type(pa.string()) if pa.types.is_null(field.type) else field for field in reader.schema])
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in reader))


def with_ordinal(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` plus an int64 column ``_sluice_ord`` numbering the rows, so merge can keep the last."""

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for batch in reader:
            ones = pa.nulls(batch.num_rows, pa.int64()).fill_null(1)
            ordinal = pc.add(pc.cumulative_sum(ones), start - 1) if batch.num_rows else pa.array([], pa.int64())
            yield batch.append_column(ORD_COLUMN, ordinal)
            start += batch.num_rows

    return pa.RecordBatchReader.from_batches(reader.schema.append(pa.field(ORD_COLUMN, pa.int64())), batches())


class _Guarded:
    """Wraps a reader so an error raised by the *source* survives the driver that consumes it."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.error: Exception | None = None
        self.reader = pa.RecordBatchReader.from_batches(reader.schema, self._batches(reader))

    def _batches(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except Exception as exc:
            self.error = exc
            raise


def check_request(table: str, schema: pa.Schema, mode: str, key: Sequence[str]) -> None:
    """Reject a write that cannot work, before touching the database."""
    if mode not in WRITE_MODES:
        hint = did_you_mean(mode, WRITE_MODES)
        raise TerminalError(f"unknown write mode '{mode}' for table '{table}'; use one of: {', '.join(WRITE_MODES)}.{hint}")
    names = list(schema.names)
    if not names:
        raise TerminalError(f"the data written to table '{table}' has no columns")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TerminalError(f"the data written to table '{table}' has duplicate columns: {', '.join(duplicates)}; rename them")
    if ORD_COLUMN in names:
        raise TerminalError(f"the data written to table '{table}' has a column '{ORD_COLUMN}', a name Sluice reserves; rename it")
    if mode != "merge":
        return
    if not key:
        raise TerminalError(f"merge into table '{table}' needs key columns; set the destination's 'key'")
    for column in key:
        if column not in names:
            raise TerminalError(
                f"merge key column '{column}' is not in the data written to table '{table}' "
                f"(columns: {', '.join(names)}).{did_you_mean(column, names)}"
            )


class SqlDestination(Destination):
    """The shared write flow; a backend implements the abstract primitives below.

    Subclasses set ``backend`` (for messages), ``loads_ddl`` (the bookkeeping table with their types)
    and ``now_sql`` (current timestamp expression), and override :meth:`ph` for another placeholder style.
    """

    backend = "SQL"
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id TEXT NOT NULL, table_name TEXT NOT NULL, rows BIGINT NOT NULL, "
        "loaded_at TIMESTAMP NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "CURRENT_TIMESTAMP"

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        super().__init__(connection, root)
        self._lock = threading.Lock()

    def write(self, table: str, data: pa.RecordBatchReader, mode: WriteMode, key: Sequence[str], load_id: str) -> int:
        """Write ``data`` into ``table`` with ``mode``; return the rows written (or recorded for a repeated load).

        Example: ``dest.write("users", reader, "append", [], load_id="run-7:1001")``.
        """
        reader = without_null_type(as_reader(data))
        name = self.parse_table(table)
        check_request(table, reader.schema, mode, key)
        guarded = _Guarded(reader)
        with self._lock:
            try:
                with self.transaction():
                    return self._write(name, table, guarded.reader, mode, tuple(key), load_id)
            except SluiceError:
                raise
            except Exception as exc:
                if guarded.error is not None:
                    raise guarded.error from None
                raise self.wrap_error(exc, table) from exc

    def parse_table(self, table: str) -> TableName:
        return TableName.parse(table)

    def wrap_error(self, exc: Exception, table: str) -> ObjectError:
        """A driver error as TransientError (connection, lock) or TerminalError (SQL, schema)."""
        detail = " ".join(str(exc).split())
        where = f"writing table '{table}' to {self.backend} connection '{self.connection.name}' failed"
        if self.is_transient(exc):
            return TransientError(f"{where}: {detail}; nothing was written, try again")
        return TerminalError(f"{where}: {detail}; fix the table or the data, then run again")

    # -- the flow --------------------------------------------------------------------------------------

    def _write(
        self, name: TableName, label: str, reader: pa.RecordBatchReader, mode: str, key: tuple[str, ...], load_id: str
    ) -> int:
        recorded = self._claim(label, load_id, mode)
        if recorded is not None:
            return recorded
        if name.schema:
            self.create_schema(name.schema)
        columns = self.describe(name)
        if mode == "append":
            rows = self._append(name, label, reader, columns)
        elif mode == "replace":
            rows = self._replace(name, reader, columns)
        else:
            rows = self._merge(name, label, reader, columns, key)
        p1, p2, p3 = self.ph(1), self.ph(2), self.ph(3)
        self.execute(f"UPDATE {LOADS_TABLE} SET rows = {p1} WHERE load_id = {p2} AND table_name = {p3}", (rows, load_id, label))
        return rows

    def _claim(self, label: str, load_id: str, mode: str) -> int | None:
        """Record the load; for an append already recorded, return its row count (the write is skipped)."""
        self.ensure_loads_table()
        p1, p2 = self.ph(1), self.ph(2)
        claimed = self.query(
            f"INSERT INTO {LOADS_TABLE} (load_id, table_name, rows, loaded_at) VALUES ({p1}, {p2}, 0, {self.now_sql}) "
            "ON CONFLICT (load_id, table_name) DO NOTHING RETURNING load_id",
            (load_id, label),
        )
        if claimed:
            return None
        if mode == "append":
            rows = self.query(f"SELECT rows FROM {LOADS_TABLE} WHERE load_id = {p1} AND table_name = {p2}", (load_id, label))
            return int(rows[0][0])
        self.execute(
            f"UPDATE {LOADS_TABLE} SET loaded_at = {self.now_sql} WHERE load_id = {p1} AND table_name = {p2}", (load_id, label)
        )
        return None

    def _append(self, name: TableName, label: str, reader: pa.RecordBatchReader, columns: dict[str, str] | None) -> int:
        if columns is None:
            self.create_table(name, reader.schema)
        else:
            _check_columns(label, reader.schema.names, columns)
            self.check_types(label, reader.schema, columns)
        return self.insert(name, reader)

    def _replace(self, name: TableName, reader: pa.RecordBatchReader, columns: dict[str, str] | None) -> int:
        if columns is not None and columns == self.expected_columns(reader.schema):
            self.truncate(name)
        else:
            if columns is not None:
                self.execute(f"DROP TABLE {name.sql}")
            self.create_table(name, reader.schema)
        return self.insert(name, reader)

    def _merge(
        self, name: TableName, label: str, reader: pa.RecordBatchReader, columns: dict[str, str] | None, key: tuple[str, ...]
    ) -> int:
        if columns is None:
            self.create_table(name, reader.schema)
        else:
            _check_columns(label, reader.schema.names, columns)
        stage = self.stage(with_ordinal(reader), key)
        nulls = self.query(f"SELECT count(*) FROM {stage.sql} WHERE " + " OR ".join(f"{quote(k)} IS NULL" for k in key))
        if int(nulls[0][0]):
            raise TerminalError(
                f"merge into table '{label}': {nulls[0][0]} rows have a null key ({', '.join(key)}); key columns must not be null"
            )
        matches = " AND ".join(f"s.{quote(k)} = t.{quote(k)}" for k in key)
        self.execute(f"DELETE FROM {name.sql} AS t WHERE EXISTS (SELECT 1 FROM {stage.sql} AS s WHERE {matches})")
        cols = ", ".join(quote(c) for c in reader.schema.names)
        partition = ", ".join(quote(k) for k in key)
        rows = self.insert_select(
            f"INSERT INTO {name.sql} ({cols}) SELECT {cols} FROM (SELECT {cols}, row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY {quote(ORD_COLUMN)} DESC) AS _sluice_rn FROM {stage.sql}) AS d "
            "WHERE _sluice_rn = 1"
        )
        self.execute(f"DROP TABLE {stage.sql}")
        return rows

    def ph(self, position: int) -> str:
        """The placeholder for the ``position``-th (1-based) statement parameter."""
        return "?"

    def ensure_loads_table(self) -> None:
        self.execute(self.loads_ddl.format(table=LOADS_TABLE))

    @staticmethod
    def stage_name() -> str:
        return f"_sluice_stage_{uuid.uuid4().hex[:12]}"

    # -- backend primitives --------------------------------------------------------------------------

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Open (or reuse) the connection and run the body in one transaction; roll back on error."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        """Run one statement that returns nothing."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows."""

    @abstractmethod
    def insert_select(self, sql: str) -> int:
        """Run an ``INSERT ... SELECT`` and return the number of rows it inserted."""

    @abstractmethod
    def describe(self, name: TableName) -> dict[str, str] | None:
        """Column name -> type of the table, or None when it does not exist."""

    @abstractmethod
    def expected_columns(self, schema: pa.Schema) -> dict[str, str]:
        """Column name -> type that :meth:`create_table` would give ``schema``, comparable to :meth:`describe`."""

    @abstractmethod
    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        """Create the table with columns for ``schema``."""

    @abstractmethod
    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        """Bulk-load ``reader`` into the existing table by column name; return the rows loaded."""

    @abstractmethod
    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        """Load ``reader`` into a new temporary table (looked up by ``key`` afterwards) and return its name."""

    @abstractmethod
    def is_transient(self, exc: Exception) -> bool:
        """True when ``exc`` is a connection, lock or resource problem that a retry may get past."""

    def check_types(self, label: str, schema: pa.Schema, columns: dict[str, str]) -> None:
        """Raise TerminalError when the bulk-load path cannot put ``schema`` into an existing table."""

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def truncate(self, name: TableName) -> None:
        self.execute(f"DELETE FROM {name.sql}")


def _check_columns(label: str, data_columns: Sequence[str], table_columns: dict[str, str]) -> None:
    for column in data_columns:
        if column not in table_columns:
            raise TerminalError(
                f"table '{label}' has no column '{column}', which the data has (table columns: {', '.join(table_columns)})."
                f"{did_you_mean(column, table_columns)} Add the column to the table or write with mode 'replace'"
            )
