"""SQLite source (``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``), read-only, in chunks.

SQLite values carry no fixed type, so each column's Arrow type comes from its declared type (``INTEGER``,
``REAL``, ``TEXT``, ``BLOB``, ``DATE``, ``DATETIME``, ``BOOLEAN``...) or, for expressions, from the values
in the first chunk. A column whose first chunk does not fit its declared type is read as text; a value
that does not fit further down is an error that suggests a ``CAST`` in a query.

The database is opened read-only (a missing file is an error, never created); ``?timeout=<seconds>`` in
the URL sets how long to wait for a writer's lock (5 s by default) before a TransientError.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pyarrow as pa

from sluice.connectors.batching import stream, transpose
from sluice.connectors.sql import SqlSource
from sluice.errors import TerminalError

TRANSIENT_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_PROTOCOL")
_TRUE = frozenset({"1", "true", "t", "yes", "y"})


def declared_type(declaration: str) -> pa.DataType | None:
    """The Arrow type for a declared SQLite column type, following SQLite's affinity rules; None if undeclared."""
    text = declaration.upper()
    if not text:
        return None
    if "INT" in text:
        return pa.int64()
    if "BOOL" in text:
        return pa.bool_()
    if any(word in text for word in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in text:
        return pa.binary()
    if any(word in text for word in ("REAL", "FLOA", "DOUB", "DEC", "NUM")):
        return pa.float64()
    if "DATETIME" in text or "TIMESTAMP" in text:
        return pa.timestamp("us")
    if "DATE" in text:
        return pa.date32()
    return None


def inferred_type(values: Sequence[Any]) -> pa.DataType:
    """The Arrow type for an undeclared column from its values (text when empty or mixed)."""
    kinds = {type(value) for value in values if value is not None}
    if kinds == {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    if kinds == {bytes}:
        return pa.binary()
    return pa.string()


def to_array(values: list[Any], type_: pa.DataType) -> pa.Array:
    """Convert one column of SQLite values; raises ArrowInvalid/ArrowTypeError when a value does not fit."""
    if pa.types.is_string(type_):
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.array([None if value is None else _as_text(value) for value in values], pa.string())
    if pa.types.is_boolean(type_):
        return pa.array([None if value is None else _as_bool(value) for value in values], pa.bool_())
    if pa.types.is_date(type_) or pa.types.is_timestamp(type_):
        return pa.array(values, pa.string()).cast(type_)
    return pa.array(values, type_)


class SqliteSource(SqlSource):
    """``{type: sql, connection: local, table: orders}`` over a ``sqlite:///`` connection."""

    scheme = "sqlite"

    @property
    def timeout(self) -> float:
        """Seconds to wait for a writer's lock: ``?timeout=`` in the URL, 5 by default."""
        values = parse_qs(urlsplit(self.connection.url).query).get("timeout")
        return float(values[-1]) if values else 5.0

    def read(self) -> pa.RecordBatchReader:
        path, query, size = self.database_file, self.query, self.batch_rows
        if not path.is_file():
            raise TerminalError(
                f"sqlite {self.describe()}: database file {path} does not exist; "
                "sqlite:/// URLs with three slashes are relative to the project folder, four slashes are absolute"
            )
        try:
            con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=self.timeout, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self.error(exc) from exc
        try:
            declared = self.declared_types(con, query)
            cursor = con.execute(query)
            first = cursor.fetchmany(size)
        except sqlite3.Error as exc:
            con.close()
            raise self.error(exc) from exc
        if cursor.description is None:
            con.close()
            raise TerminalError(f"sqlite {self.describe()}: the statement returns no rows; use a SELECT")
        names = [column[0] for column in cursor.description]
        columns = transpose(first, len(names))
        types = [self.choose_type(declared.get(i), columns[i]) for i in range(len(names))]
        schema = pa.schema(list(zip(names, types, strict=True)))

        def batches() -> Iterator[pa.RecordBatch]:
            rows = first
            while rows:
                yield self.batch(schema, rows)
                rows = cursor.fetchmany(size)

        return stream(schema, batches(), on_error=self.translate, on_close=con.close)

    def declared_types(self, con: sqlite3.Connection, query: str) -> dict[int, pa.DataType]:
        """Declared column types of the query's result, by position, read through a temporary view."""
        try:
            con.execute(f"CREATE TEMP VIEW sluice_source_columns AS {query}")
        except sqlite3.Error:
            return {}  # not a plain SELECT: running the query itself reports any problem
        try:
            info = con.execute("PRAGMA temp.table_info(sluice_source_columns)").fetchall()
        finally:
            con.execute("DROP VIEW temp.sluice_source_columns")
        types = {int(row[0]): declared_type(str(row[2] or "")) for row in info}
        return {position: type_ for position, type_ in types.items() if type_ is not None}

    @staticmethod
    def choose_type(declared: pa.DataType | None, values: list[Any]) -> pa.DataType:
        candidate = declared if declared is not None else inferred_type(values)
        try:
            to_array(values, candidate)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return pa.string()
        return candidate

    def batch(self, schema: pa.Schema, rows: list[Any]) -> pa.RecordBatch:
        arrays = []
        for field, values in zip(schema, transpose(rows, len(schema)), strict=True):
            try:
                arrays.append(to_array(values, field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
                raise TerminalError(
                    f"sqlite {self.describe()}: column {field.name!r} was read as {field.type} from its first rows, "
                    f"but a later value does not fit ({exc}); use a query with CAST({field.name} AS TEXT) or fix the data"
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def error(self, exc: sqlite3.Error) -> Exception:
        if getattr(exc, "sqlite_errorname", "") in TRANSIENT_CODES:
            return self.busy(exc)
        return self.rejected(exc)

    def translate(self, exc: Exception) -> Exception | None:
        return self.error(exc) if isinstance(exc, sqlite3.Error) else None


def _as_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _as_bool(value: Any) -> bool:
    return value.strip().lower() in _TRUE if isinstance(value, str) else bool(value)
