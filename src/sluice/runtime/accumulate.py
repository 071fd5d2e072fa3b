"""The lake output of an incremental source accumulates: its previous version plus this run's delta.

An incremental source (a REST source with ``incremental:``, the batch Kafka source) reads only what changed since its
saved cursor or committed offsets (:meth:`Source.accumulates <sluice.connectors.base.Source.accumulates>`). Its lake
output must still hold everything read so far, or the objects downstream would see only the newest records.
:class:`Accumulation` builds the new version with DuckDB, never row by row in Python:

- with a key (the source's ``incremental.primary_key``, else the destination's merge ``key``, else its
  ``primary_key``): the previous rows whose key is not in the delta, and the delta's last row of each key;
- without one: the previous rows, then the delta's.

A read of everything (a first run, or one after ``sluice state reset``: no previous output to add to) keeps, with a
key, the last record read of each key the same way. A column both versions have takes a type that holds every value of
both exactly, by the destinations' rules (:func:`sluice.destinations.types.widened`); any other type change (numbers,
then text) is refused before anything is written, naming the column and both types: DuckDB's ``UNION ALL BY NAME``
would turn the column into text and so rewrite every previous value.

The delta is held in an in-memory DuckDB table (spilling to its temporary folder when large); the previous version
is scanned from the lake. :meth:`Accumulation.merged` streams the new version, which the executor writes as the
object's lake output like any other (one atomic replacement). A destination in ``append`` or ``merge`` mode gets
the delta (:meth:`Accumulation.then_delta`), a ``replace`` one the whole new version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sluice.destinations.sql import ORD_COLUMN, quote, with_ordinal
from sluice.destinations.types import MAX_EXACT_FLOAT_INT, is_nested, same, widened
from sluice.errors import TerminalError, did_you_mean
from sluice.lake.base import Lake, Then

if TYPE_CHECKING:
    from sluice.connectors.base import Source
    from sluice.project.model import ObjectSpec

BATCH_ROWS = 50_000
DELTA = "sluice_delta"
PREVIOUS = "sluice_previous"


def accumulation_key(obj: ObjectSpec, source: Source[Any]) -> tuple[str, ...]:
    """The columns an incremental ``obj``'s lake output is merged on: the source's own declared key
    (``incremental.primary_key``), else the destination's merge ``key``, else its ``primary_key``; () for none."""
    declared = tuple(getattr(source, "accumulation_key", ()) or ())
    if declared:
        return declared
    spec = obj.destination
    if spec is None:
        return ()
    if spec.mode == "merge" and spec.key:
        return tuple(spec.key)
    return tuple(getattr(spec, "primary_key", ()) or ())


class Accumulation:
    """One incremental run's new lake version: ``previous`` (a lake location) plus the ``delta`` read.

    Open it with :meth:`open`; :meth:`merged` and :meth:`delta` stream from an in-memory DuckDB, closed by
    :meth:`close`. ``delta_rows``: the rows this run read. Raises TerminalError (one line, naming the object and
    what to do) when a key column is missing or the two versions' columns cannot be combined.
    """

    remedy = "declare its type (column_types) and run 'sluice state reset PATH --object ID' to read everything again"
    """What to do when a value of this run's records does not fit the column's type (said by the error)."""

    def __init__(
        self,
        con: Any,
        key: tuple[str, ...],
        delta_schema: pa.Schema,
        previous_schema: pa.Schema,
        delta_rows: int,
        previous_rows: int,
        label: str,
        types: dict[str, pa.DataType] | None = None,
        whole: bool = False,
    ) -> None:
        self._con = con
        self.types = types or {}
        """The Arrow type of each column both versions have (:func:`_combined`); of every previous column when this
        run read nothing (the previous output is kept as it is)."""
        self.whole = whole
        """True for a read of everything (no previous output to add to)."""
        self.delta_schema = delta_schema
        self.previous_schema = previous_schema
        self.previous_rows = previous_rows
        self.key = key
        self.delta_rows = delta_rows
        self.label = label

    @classmethod
    def open(
        cls,
        lake: Lake,
        previous: str | None,
        delta: pa.RecordBatchReader,
        key: Sequence[str],
        label: str,
        *,
        key_setting: str = "the declared key (incremental.primary_key or the destination's key)",
        reread: str = "run 'sluice state reset PATH --object ID' to read everything again",
        type_setting: str = "column_types",
    ) -> Accumulation:
        """Hold ``delta`` (read to its end) and name the ``previous`` output of ``lake`` (None: a read of everything,
        kept as read but for the last record of each key); see the class. ``key_setting``: where the key is declared
        (said when a key column is missing from the records); ``reread``: what to do to read everything again (the
        source's :meth:`~sluice.connectors.base.Source.reread`); ``type_setting``: the source's option that declares a
        column's type."""
        import duckdb

        from sluice.transforms.sql import create_input_views

        con = duckdb.connect(":memory:")
        try:
            con.execute("SET preserve_insertion_order = true")
            numbered = with_ordinal(delta)
            con.register("sluice_delta_in", numbered)
            con.execute(f"CREATE TABLE {DELTA} AS SELECT * FROM sluice_delta_in")
            con.unregister("sluice_delta_in")
            delta_columns = list(delta.schema.names)
            rows = int(con.execute(f"SELECT count(*) FROM {DELTA}").fetchall()[0][0])
            previous_columns: list[str] = []
            previous_rows = 0
            if previous is not None:
                create_input_views(con, {PREVIOUS: lake.duckdb_input(previous)})
                previous_columns = [row[0] for row in con.execute(f"DESCRIBE {PREVIOUS}").fetchall()]
                previous_rows = int(con.execute(f"SELECT count(*) FROM {PREVIOUS}").fetchall()[0][0])
            for column in key if rows else ():  # (the delta's last record of each key is kept)
                if column not in delta_columns:  # a misspelt key, most likely: reading again would not help
                    raise TerminalError(
                        f"{label}: the key column {column!r} is not in this run's records (columns: "
                        f"{', '.join(delta_columns)}).{did_you_mean(column, delta_columns)} Correct {key_setting}"
                    )
                if previous_rows and column not in previous_columns:
                    raise TerminalError(
                        f"{label}: the key column {column!r} is not in the previous lake output (columns: "
                        f"{', '.join(previous_columns)}); {reread}"
                    )
            previous_schema = _schema_of(lake, previous) if previous is not None else pa.schema([])
            remedy = f"declare its type ({type_setting}) and {reread}"
            if previous is None:
                types: dict[str, pa.DataType] = {}
            elif not rows and previous_rows:  # nothing new: the previous output as it is, with its own types
                types = {field.name: field.type for field in previous_schema}
            else:  # (an empty previous output refuses no type: it has no value to rewrite)
                types = _combined(previous_schema, delta.schema, label, remedy, strict=bool(rows and previous_rows))
            for column, kind in types.items() if rows and previous_rows else ():  # DuckDB would round an integer
                if pa.types.is_floating(kind):  # beyond 2**53 into a double
                    _exact_in_double(con, column, previous_schema, delta.schema, label, remedy)
        except duckdb.Error as exc:
            con.close()
            raise TerminalError(f"{label}: cannot read the previous lake output to add this run's records: {exc}") from exc
        except BaseException:
            con.close()
            raise
        accumulation = cls(con, tuple(key), delta.schema, previous_schema, rows, previous_rows, label, types, previous is None)
        accumulation.remedy = f"declare its type ({type_setting}) and {reread}"
        return accumulation

    def merged_sql(self) -> str:
        """The new version's query (DuckDB): see the module."""
        delta = f"SELECT * EXCLUDE ({quote(ORD_COLUMN)}) FROM {DELTA}"
        order = quote(ORD_COLUMN)
        keys = ", ".join(quote(k) for k in self.key)
        last = f"{delta} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order} DESC) = 1"
        if self.whole:  # everything read: as read, but for the last record of each key
            if not self.key or not self.delta_rows:
                return f"{delta} ORDER BY {order}"
            ranked = f"SELECT * FROM {DELTA} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order} DESC) = 1"
            return f"SELECT * EXCLUDE ({order}) FROM ({ranked}) ORDER BY {order}"
        if not self.previous_rows:  # the delta's columns first (an empty previous output may have had other ones)
            return f"({delta} ORDER BY {quote(ORD_COLUMN)}) UNION ALL BY NAME SELECT * FROM {PREVIOUS}"
        if not self.delta_rows:
            return f"SELECT * FROM {PREVIOUS}"
        if not self.key:
            return f"SELECT * FROM {PREVIOUS} UNION ALL BY NAME ({delta} ORDER BY {quote(ORD_COLUMN)})"
        same = " AND ".join(f"d.{quote(k)} IS NOT DISTINCT FROM p.{quote(k)}" for k in self.key)
        kept = f"SELECT p.* FROM {PREVIOUS} AS p WHERE NOT EXISTS (SELECT 1 FROM {DELTA} AS d WHERE {same})"
        return f"{kept} UNION ALL BY NAME ({last})"

    def merged(self) -> pa.RecordBatchReader:
        """The new version: the previous output with this run's records merged in (see the module), each column of the
        Arrow type the two versions share (:func:`_combined`: the delta's, or one holding both's values exactly, int64
        and double give double, a ``null`` field of either taking the other's type), not DuckDB's (which would turn
        ``timestamp[ms]`` into ``timestamp[us]``); the previous output's own types when this run read nothing. Its
        batches raise TerminalError (one line) when a value does not fit its column's type."""
        import duckdb

        try:
            reader = self._con.sql(self.merged_sql()).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise self._cannot(exc) from exc
        fields = []
        for field in reader.schema:
            if field.name in self.types:
                fields.append(pa.field(field.name, self.types[field.name]))
            elif field.name in self.delta_schema.names:
                fields.append(self.delta_schema.field(field.name))
            elif field.name in self.previous_schema.names:
                fields.append(self.previous_schema.field(field.name))
            else:
                fields.append(field)
        return _cast(reader, pa.schema(fields), self._cannot)

    def delta(self, cursor: Any = None) -> pa.RecordBatchReader:
        """This run's records, in the order read, with their own Arrow types, on ``cursor`` (a :meth:`cursor`, to read
        them in another thread than :meth:`merged`'s; None: a new one)."""
        cursor = cursor if cursor is not None else self._con.cursor()
        sql = f"SELECT * EXCLUDE ({quote(ORD_COLUMN)}) FROM {DELTA} ORDER BY {quote(ORD_COLUMN)}"
        return _cast(cursor.sql(sql).to_arrow_reader(BATCH_ROWS), self.delta_schema, self._cannot)

    def _cannot(self, exc: Exception) -> TerminalError:
        return TerminalError(
            f"{self.label}: this run's records cannot be added to the previous lake output: {' '.join(str(exc).split())}; "
            f"{self.remedy}"
        )

    def then_delta(self, publish: Then) -> Then:
        """A lake write's ``then`` step that loads this run's records (not the new version it is given) with
        ``publish``: its stream ends only once the new version's stream ended, so the load commits only once the lake
        output is complete, and it raises when that write failed (the load rolls back)."""

        cursor = self._con.cursor()  # made here, before the lake write streams from the connection in this thread

        def load(version: pa.RecordBatchReader) -> int:
            delta = self.delta(cursor)

            def batches() -> Iterator[pa.RecordBatch]:
                yield from delta
                for _ in version:  # wait for the new version to be written whole (raises when it was not)
                    pass

            return publish(pa.RecordBatchReader.from_batches(delta.schema, batches()))

        return load

    def close(self) -> None:
        self._con.close()


def _combined(previous: pa.Schema, delta: pa.Schema, label: str, remedy: str, *, strict: bool = True) -> dict[str, pa.DataType]:
    """The Arrow type of each column both ``previous`` and ``delta`` have: one holding every value of both exactly,
    by the destinations' rules (:func:`sluice.destinations.types.widened`: a wider integer, int and float as double,
    int and decimal as a decimal with room for both), a null column taking the other's type (a ``null`` field never
    narrows a concrete one, at the top level or inside a struct or list), a struct or list gaining the other's
    fields. Raises TerminalError naming the column and both types for any other pair (a number, then text): no
    previous value is rewritten; unless not ``strict`` (a side without rows), where such a pair takes the delta's
    type."""
    types: dict[str, pa.DataType] = {}
    for field in delta:
        if field.name not in previous.names:
            continue
        held = previous.field(field.name).type
        kind = _holding_both(held, field.type)
        if kind is None and not strict:
            kind = field.type
        if kind is None:
            raise TerminalError(
                f"{label}: column {field.name!r} is {held} in the previous lake output but {field.type} in this run's "
                "records, and no type holds both without rewriting a value; nothing was written and the cursor did "
                f"not move: {remedy}"
            )
        types[field.name] = kind
    return types


def _holding_both(held: pa.DataType, data: pa.DataType) -> pa.DataType | None:
    if pa.types.is_null(held) or held == data:
        return data
    if pa.types.is_null(data):
        return held
    if same(held, data) or (is_nested(held) and is_nested(data)):  # string flavours, time units; nested fields
        try:
            both = [pa.schema([("c", held)]), pa.schema([("c", data)])]
            return pa.unify_schemas(both, promote_options="permissive").field(0).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return data if same(held, data) else None
    return widened(held, data)


def _exact_in_double(con: Any, column: str, previous: pa.Schema, delta: pa.Schema, label: str, remedy: str) -> None:
    """Raise TerminalError when ``column``, an integer in one version and a float in the other, holds an integer beyond
    2**53 (which a double would round), as the destinations check before widening (:mod:`sluice.destinations.sql`)."""
    for table, schema, side in ((PREVIOUS, previous, "the previous lake output"), (DELTA, delta, "this run's records")):
        if not pa.types.is_integer(schema.field(column).type):
            continue
        name = quote(column)
        found = con.execute(f"SELECT count(*) FROM {table} WHERE abs({name}::HUGEINT) > {MAX_EXACT_FLOAT_INT}").fetchall()[0][0]
        if found:
            raise TerminalError(
                f"{label}: column {column!r} becomes double to hold both versions' values, but {found} integer(s) of "
                f"{side} exceed 2**53 and would be rounded; nothing was written and the cursor did not move: declare "
                f"{remedy}"
            )


def _schema_of(lake: Lake, location: str) -> pa.Schema:
    """The Arrow schema of the lake output at ``location`` (its metadata dropped)."""
    reader = lake.read(location)
    try:
        return reader.schema.remove_metadata()
    finally:
        reader.close()


def _cast(reader: pa.RecordBatchReader, schema: pa.Schema, error: Any) -> pa.RecordBatchReader:
    """``reader``'s batches cast to ``schema`` (same column names); a value that does not fit raises ``error(exc)``."""
    if reader.schema.equals(schema):
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                yield batch.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise error(exc) from exc

    return pa.RecordBatchReader.from_batches(schema, batches())
