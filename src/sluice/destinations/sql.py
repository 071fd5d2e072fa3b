"""The write flow shared by the SQL destinations (PostgreSQL, DuckDB, SQLite).

A backend module supplies connections, SQL execution and its bulk-load path; this module decides what
runs, so every backend has the same semantics. One write is one transaction, bookkeeping included:

- ``append``: create the table from the Arrow schema if missing, then bulk-load into it. The load is
  recorded in ``_sluice_loads`` (``load_id``, ``table_name``, ``rows``, ``loaded_at``); a ``load_id``
  already recorded for the table is not loaded again and its recorded row count is returned.
- ``replace``: empty the table and load it when its columns and types match the data, else drop it and
  create it from the data. Readers see the old rows until the transaction commits.
- ``merge``: load into a temporary staging table, keep the last row of each key, delete the target rows
  whose key is staged and insert the staged rows. Running the same merge twice leaves the same rows; merges
  into one table at once take turns (:meth:`SqlDestination.lock_ddl`), so none inserts a key twice.

Every mode runs the same column check against an existing table (:meth:`SqlDestination._evolve`): a
column new in the data is added (nullable); a column whose values convert without loss is converted
(int32 into bigint); any other type change is refused naming the table, the column and both types,
unless ``schema_evolution`` is ``widen`` and a type holding both exists, which the column is altered
to. Names longer than the database keeps are refused before anything runs. See docs/destinations.md.

Example::

    dest = open_destination(ConnectionSpec("dw", "duckdb:///dw.duckdb", origin), root=project.root)
    dest.write("analytics.users", reader, mode="merge", key=["id"], load_id="run-1:1001")
"""

from __future__ import annotations

import re
import threading
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.destinations.base import Destination
from sluice.destinations.types import MAX_EXACT_FLOAT_INT, checked_cast, converted, lossless, same, widened
from sluice.errors import ObjectError, SluiceError, TerminalError, TransientError, did_you_mean
from sluice.project.model import SCHEMA_EVOLUTIONS, WRITE_MODES, ConnectionSpec, DestinationSpec, SchemaEvolution, WriteMode

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


@dataclass(frozen=True, slots=True)
class LoadedRows:
    """The rows of the load under way, as :meth:`SqlDestination.write`'s ``before_commit`` sees them (inside the
    load's transaction, once they are in).

    ``rows``: how many this load brought (a merge's staged rows, before keeping the last of each key);
    ``relation``: the SQL name of a relation holding exactly them (a temporary view over the staged rows: a merge's,
    or an append's when ``keep_load`` asked for it), or None; ``only_table``: the table holds nothing but them (a
    ``replace``, or a table this load created).
    """

    rows: int
    relation: str | None = None
    only_table: bool = False


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


def name_too_long(what: str, ident: str, backend: str, limit: int) -> str:
    """Why ``ident`` (``what`` names it: ``table name 'x'``) is refused when its UTF-8 encoding is over ``limit`` bytes,
    which ``backend`` would cut it to (a later run would not find it), or ""."""
    size = len(ident.encode())
    if size <= limit:
        return ""
    return (
        f"{what} is {size} bytes long, but {backend} keeps at most {limit} bytes of a name and would cut it short, "
        f"so the next run would not find it; use a name of at most {limit} bytes"
    )


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
    max_identifier_bytes: int | None = None
    loads_ddl = (
        "CREATE TABLE IF NOT EXISTS {table} (load_id TEXT NOT NULL, table_name TEXT NOT NULL, rows BIGINT NOT NULL, "
        "loaded_at TIMESTAMP NOT NULL, PRIMARY KEY (load_id, table_name))"
    )
    now_sql = "CURRENT_TIMESTAMP"

    def __init__(self, connection: ConnectionSpec, root: Path | None = None) -> None:
        super().__init__(connection, root)
        self._lock = threading.Lock()
        self._wrote = False  # whether the write under way loaded rows (False: a load already recorded)
        self._keep = False  # whether the write under way keeps its rows apart for before_commit (keep_load)
        self._kept: list[str] = []  # statements dropping what it kept, run before the commit
        self._loaded = LoadedRows(0)  # the rows of the write under way

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
        """Write ``data`` into ``table`` with ``mode``; return the rows written (or recorded for a repeated load).

        ``before_commit`` is called inside the load's transaction once the rows are in (not for a load already
        recorded), with the load's :class:`LoadedRows`: what it raises rolls the whole load back (PostgreSQL runs an
        object's checks there). ``keep_load``: an ``append`` into an existing table stages its rows in a temporary
        table first and inserts them from there, so ``before_commit`` gets a relation holding only them (a merge
        always stages); the staged rows are dropped before the commit.

        ``options`` (the object's whole destination spec) is read by backends with options of their own
        (PostgreSQL's warehouse options); the shared flow uses only the arguments.
        Example: ``dest.write("users", reader, "append", [], load_id="run-7:1001")``.
        """
        reader = without_null_type(as_reader(data))
        name = self.parse_table(table)
        check_request(table, reader.schema, mode, key)
        if schema_evolution not in SCHEMA_EVOLUTIONS:
            raise TerminalError(
                f"unknown schema_evolution '{schema_evolution}' for table '{table}'; use one of: {', '.join(SCHEMA_EVOLUTIONS)}"
            )
        self.check_identifiers(name, table, reader.schema)
        guarded = _Guarded(reader)
        with self._lock:
            try:
                with self.transaction():
                    self._keep, self._kept = keep_load and before_commit is not None, []
                    rows = self._write(name, table, guarded.reader, mode, tuple(key), load_id, schema_evolution)
                    if before_commit is not None and self._wrote:
                        before_commit(self._loaded)
                    for statement in reversed(self._kept):  # temporary: gone before the connection is reused
                        self.execute(statement)
                    return rows
            except SluiceError:
                raise
            except Exception as exc:
                if guarded.error is not None:
                    raise guarded.error from None
                raise self.wrap_error(exc, table) from exc

    def parse_table(self, table: str) -> TableName:
        return TableName.parse(table)

    def has_table(self, table: str) -> bool:
        """Whether ``table`` exists; False when it does not, or when the database cannot be asked.

        A database file that does not exist is not created to find out.
        """
        path = getattr(self, "path", None)
        if isinstance(path, Path) and not path.exists():
            return False
        try:
            with self._lock, self.transaction():
                return self.describe(self.parse_table(table)) is not None
        except Exception:
            return False

    def check_identifiers(self, name: TableName, label: str, schema: pa.Schema) -> None:
        """Refuse names the database would cut short (a later run would not find them), before anything runs."""
        limit = self.max_identifier_bytes
        if limit is None:
            return
        named: list[tuple[str, str, str]] = (
            [("schema", name.schema, f"the destination's 'table' ('{label}')")] if name.schema else []
        )
        named.append(("table", name.name, f"the destination's 'table' ('{label}')"))
        named.extend(("column", column, "the object (e.g. SELECT ... AS a_shorter_name)") for column in schema.names)
        for kind, ident, where in named:
            owner = "" if kind != "column" else f" of table '{label}'"
            problem = name_too_long(f"{kind} name '{ident}'{owner}", ident, self.backend, limit)
            if problem:
                raise TerminalError(f"{problem} in {where}")

    def wrap_error(self, exc: Exception, table: str) -> ObjectError:
        """A driver error as TransientError (connection, lock) or TerminalError (SQL, schema)."""
        detail = " ".join(str(exc).split())
        where = f"writing table '{table}' to {self.backend} connection '{self.connection.name}' failed"
        if self.is_transient(exc):
            return TransientError(f"{where}: {detail}; nothing was written, try again")
        return TerminalError(f"{where}: {detail}; fix the table or the data, then run again")

    # -- the flow --------------------------------------------------------------------------------------

    def _write(
        self,
        name: TableName,
        label: str,
        reader: pa.RecordBatchReader,
        mode: str,
        key: tuple[str, ...],
        load_id: str,
        evolution: str = "strict",
    ) -> int:
        self._wrote = False
        recorded = self._claim(label, load_id, mode)
        if recorded is not None:
            return recorded
        self._wrote = True
        if name.schema:
            self.create_schema(name.schema)
        columns = self.describe(name)
        if columns is None:
            # Another load may be creating it right now: wait for it (PostgreSQL) and look again.
            self.lock_ddl(f"table:{name}")
            columns = self.describe(name)
        load_schema = self.load_schema(label, reader.schema)
        expected = self.expected_columns(load_schema)
        if mode == "replace" and columns is not None and (columns != expected or not self.reuse_layout(name, mode)):
            self.execute(f"DROP TABLE {name.sql}")
            columns = None
        created = columns is None
        if columns is None:
            self.create_table(name, load_schema)
            target = load_schema
        else:
            if mode != "replace":
                self.reuse_layout(name, mode)
            target = self._evolve(name, label, reader.schema, load_schema, columns, evolution)
            self.complete_table(name)
            if mode == "replace":
                self.truncate(name)
        reader = converted(reader, target, label, expected)
        if mode == "merge":
            rows = self._merge(name, label, reader, key)
        elif mode == "append" and self._keep and not created:
            rows = self._append_staged(name, reader)
        else:
            rows = self.insert(name, reader)
            self._loaded = LoadedRows(rows, None, only_table=mode == "replace" or created)
        p1, p2, p3 = self.ph(1), self.ph(2), self.ph(3)
        self.execute(f"UPDATE {LOADS_TABLE} SET rows = {p1} WHERE load_id = {p2} AND table_name = {p3}", (rows, load_id, label))
        return rows

    def _evolve(
        self,
        name: TableName,
        label: str,
        data: pa.Schema,
        load: pa.Schema,
        columns: dict[str, str],
        evolution: str,
    ) -> pa.Schema:
        """Check the data's columns against the table's; add new columns, widen when allowed; the schema to load."""
        fields, changes = self._plan_columns(name, label, data, load, columns, evolution)
        if changes:
            # Another load may be changing the table the same way right now: take turns, then look again.
            self.lock_ddl(f"table:{name}")
            columns = self.describe(name) or columns
            fields, changes = self._plan_columns(name, label, data, load, columns, evolution)
        for column, added, have, wider in changes:
            if added:
                self.execute(f"ALTER TABLE {name.sql} ADD COLUMN {quote(column)} {self.sql_type(wider)}")
            else:
                self._widen(name, label, column, have, wider)
        return pa.schema(fields)

    def _plan_columns(
        self,
        name: TableName,
        label: str,
        data: pa.Schema,
        load: pa.Schema,
        columns: dict[str, str],
        evolution: str,
    ) -> tuple[list[pa.Field], list[tuple[str, bool, pa.DataType, pa.DataType]]]:
        """The fields to load and the columns to add or widen: ``(column, added, held type, new type)``."""
        expected = self.expected_columns(load)
        held = self.table_types(name, columns)
        fields: list[pa.Field] = []
        changes: list[tuple[str, bool, pa.DataType, pa.DataType]] = []
        for field, wanted in zip(data, load, strict=True):
            column = field.name
            if column not in columns:
                changes.append((column, True, wanted.type, wanted.type))
                fields.append(wanted)
                continue
            if self.same_sql(columns[column], expected[column]):
                fields.append(wanted)
                continue
            have = held.get(column)
            if have is not None and same(field.type, have):
                fields.append(field)  # the data fits the column as it is (e.g. a list into a PostgreSQL array)
                continue
            strict = evolution == "strict"  # (widen: the column widens to hold every value of the type instead)
            if have is not None and (lossless(wanted.type, have) or (strict and checked_cast(wanted.type, have))):
                # integers into a floating or decimal column: each value is checked as it converts
                fields.append(wanted.with_type(self.cast_target(wanted.type, have)))
                continue
            wider = widened(have, wanted.type) if have is not None and evolution == "widen" else None
            if wider is None:
                hint = (
                    "no type holds both, so write with mode 'replace' to recreate the table, or cast the column in the object"
                    if evolution == "widen"
                    else "cast the column in the object to the table's type, write with mode 'replace' to recreate the "
                    "table, or set the destination's schema_evolution: widen"
                )
                raise TerminalError(
                    f"table '{label}' column '{column}' is {columns[column]} but the data's is {expected[column]} "
                    f"(Arrow {field.type}); converting would lose values, so nothing was written: {hint}"
                )
            if have is not None and not same(wider, have):
                changes.append((column, False, have, wider))
            fields.append(wanted.with_type(wider))
        return fields, changes

    def _widen(self, name: TableName, label: str, column: str, have: pa.DataType, wider: pa.DataType) -> None:
        if pa.types.is_integer(have) and pa.types.is_floating(wider):
            limit = MAX_EXACT_FLOAT_INT
            outside = self.query(f"SELECT count(*) FROM {name.sql} WHERE {quote(column)} NOT BETWEEN {-limit} AND {limit}")
            if int(outside[0][0]):
                raise TerminalError(
                    f"table '{label}' column '{column}' cannot widen to {self.sql_type(wider)}: {outside[0][0]} of its "
                    f"integers are beyond 2**53 and would be rounded; cast the column in the object to a decimal instead"
                )
        self.alter_column_type(name, column, self.sql_type(wider))

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

    def _append_staged(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        """An append through a staging table (``keep_load``): the staged rows stay readable by ``before_commit``."""
        stage = self.stage(reader, ())
        self.before_merge(name, stage)
        cols = ", ".join(quote(c) for c in reader.schema.names)
        rows = self.insert_select(f"INSERT INTO {name.sql} ({cols}) SELECT {cols} FROM {stage.sql}")
        self._loaded = LoadedRows(rows, self._load_view(stage, reader.schema.names))
        return rows

    def _load_view(self, stage: TableName, columns: Sequence[str]) -> str:
        """A temporary view over ``stage``'s data columns (without ``_sluice_ord``), dropped with ``stage`` before the
        commit; its SQL name."""
        view = quote(f"_sluice_load_{uuid.uuid4().hex[:12]}")
        self.execute(f"CREATE TEMPORARY VIEW {view} AS SELECT {', '.join(quote(c) for c in columns)} FROM {stage.sql}")
        self._kept += [f"DROP TABLE {stage.sql}", f"DROP VIEW {view}"]
        return view

    def _merge(self, name: TableName, label: str, reader: pa.RecordBatchReader, key: tuple[str, ...]) -> int:
        stage = self.stage(with_ordinal(reader), key)
        nulls, staged = self.query(
            "SELECT coalesce(sum(CASE WHEN " + " OR ".join(f"{quote(k)} IS NULL" for k in key) + " THEN 1 ELSE 0 END), 0), "
            f"count(*) FROM {stage.sql}"
        )[0]
        if int(nulls):
            raise TerminalError(
                f"merge into table '{label}': {nulls} rows have a null key ({', '.join(key)}); key columns must not be null"
            )
        self.before_merge(name, stage)
        # Merges into one table take turns (PostgreSQL: an advisory lock to the commit): two at once would each
        # miss the other's uncommitted rows and insert a key twice (dates of a parallel backfill).
        self.lock_ddl(f"merge:{name}")
        matches = " AND ".join(f"s.{quote(k)} = t.{quote(k)}" for k in key)
        narrow = self.merge_filter(name)
        where = f"{narrow} AND " if narrow else ""
        self.execute(f"DELETE FROM {name.sql} AS t WHERE {where}EXISTS (SELECT 1 FROM {stage.sql} AS s WHERE {matches})")
        cols = ", ".join(quote(c) for c in reader.schema.names)
        partition = ", ".join(quote(k) for k in key)
        rows = self.insert_select(
            f"INSERT INTO {name.sql} ({cols}) SELECT {cols} FROM (SELECT {cols}, row_number() OVER "
            f"(PARTITION BY {partition} ORDER BY {quote(ORD_COLUMN)} DESC) AS _sluice_rn FROM {stage.sql}) AS d "
            "WHERE _sluice_rn = 1"
        )
        if self._keep:  # the staged rows, before keeping the last of each key, are this load's for before_commit
            self._loaded = LoadedRows(int(staged), self._load_view(stage, reader.schema.names))
        else:
            self._loaded = LoadedRows(int(staged))
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
        """Column name -> type that :meth:`create_table` would give ``schema``, comparable to :meth:`describe`.

        ``schema`` is a load schema (:meth:`load_schema`)."""

    def load_schema(self, label: str, schema: pa.Schema) -> pa.Schema:
        """The data's schema as this database loads it (e.g. uint64 -> decimal(20,0)); TerminalError for a type it cannot."""
        return pa.schema([field.with_type(self.load_type(label, field)) for field in schema])

    def load_type(self, label: str, field: pa.Field) -> pa.DataType:
        """The Arrow type a new column for ``field`` is created for and loaded as."""
        return field.type

    def sql_type(self, kind: pa.DataType) -> str:
        """The column type created for a load type."""
        return self.expected_columns(pa.schema([pa.field("c", kind)]))["c"]

    def table_types(self, name: TableName, columns: dict[str, str]) -> dict[str, pa.DataType | None]:
        """The Arrow type each existing column holds (None when it has none Sluice knows)."""
        return {column: self.logical_type(kind) for column, kind in columns.items()}

    def logical_type(self, sql: str) -> pa.DataType | None:
        """The Arrow type a column declared ``sql`` holds, or None."""
        return None

    def same_sql(self, table: str, data: str) -> bool:
        """True when a column declared ``table`` takes data that would create ``data`` unchanged."""
        return table == data

    def cast_target(self, data: pa.DataType, held: pa.DataType) -> pa.DataType:
        """The Arrow type data of type ``data`` is converted to for a column holding ``held`` (lossless)."""
        return held

    def reuse_layout(self, name: TableName, mode: str) -> bool:
        """Whether the existing table's layout (e.g. partitioning) is the one declared; False makes replace recreate it.

        A mismatch another mode cannot fix raises TerminalError. True by default."""
        return True

    def complete_table(self, name: TableName) -> None:
        """Add what the destination declares and the existing table lacks (e.g. indexes); nothing by default."""

    def before_merge(self, name: TableName, stage: TableName) -> None:
        """Prepare ``name`` for the rows staged in ``stage`` (e.g. create their partitions); nothing by default."""

    def merge_filter(self, name: TableName) -> str:
        """A condition on the target (alias ``t``) that every row a merge replaces meets (e.g. a partition range), or ""."""
        return ""

    def lock_ddl(self, what: str) -> None:
        """Wait for other loads creating ``what`` to finish (held until the transaction ends); no-op by default."""

    def alter_column_type(self, name: TableName, column: str, sql: str) -> None:
        self.execute(f"ALTER TABLE {name.sql} ALTER COLUMN {quote(column)} TYPE {sql}")

    @abstractmethod
    def create_table(self, name: TableName, schema: pa.Schema) -> None:
        """Create the table with columns for ``schema`` (a load schema)."""

    @abstractmethod
    def insert(self, name: TableName, reader: pa.RecordBatchReader) -> int:
        """Bulk-load ``reader`` into the existing table by column name; return the rows loaded."""

    @abstractmethod
    def stage(self, reader: pa.RecordBatchReader, key: Sequence[str]) -> TableName:
        """Load ``reader`` into a new temporary table (looked up by ``key`` afterwards) and return its name."""

    @abstractmethod
    def is_transient(self, exc: Exception) -> bool:
        """True when ``exc`` is a connection, lock or resource problem that a retry may get past."""

    def create_schema(self, schema: str) -> None:
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def truncate(self, name: TableName) -> None:
        self.execute(f"DELETE FROM {name.sql}")
