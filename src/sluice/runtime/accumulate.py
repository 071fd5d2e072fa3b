"""The lake output of an incremental source accumulates: its previous version plus this run's delta.

An incremental source (a REST source with ``incremental:``, the batch Kafka source) reads only what changed since its
saved cursor or committed offsets (:meth:`Source.accumulates <sluice.connectors.base.Source.accumulates>`). Its lake
output must still hold everything read so far, or the objects downstream would see only the newest records.
:class:`Accumulation` builds the new version with DuckDB, never row by row in Python:

- with a key (the source's ``incremental.primary_key``, else the destination's merge ``key``, else its
  ``primary_key``): the previous rows whose key is not in the delta, and the delta's last row of each key;
- without one: the previous rows, then the delta's.

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

    def __init__(
        self,
        con: Any,
        key: tuple[str, ...],
        delta_schema: pa.Schema,
        previous_schema: pa.Schema,
        delta_rows: int,
        previous_rows: int,
        label: str,
    ) -> None:
        self._con = con
        self.delta_schema = delta_schema
        self.previous_schema = previous_schema
        self.previous_rows = previous_rows
        self.key = key
        self.delta_rows = delta_rows
        self.label = label

    @classmethod
    def open(cls, lake: Lake, previous: str, delta: pa.RecordBatchReader, key: Sequence[str], label: str) -> Accumulation:
        """Hold ``delta`` (read to its end) and name the ``previous`` output of ``lake``; see the class."""
        import duckdb

        from sluice.transforms.sql import create_input_views

        con = duckdb.connect(":memory:")
        try:
            con.execute("SET preserve_insertion_order = true")
            numbered = with_ordinal(delta)
            con.register("sluice_delta_in", numbered)
            con.execute(f"CREATE TABLE {DELTA} AS SELECT * FROM sluice_delta_in")
            con.unregister("sluice_delta_in")
            create_input_views(con, {PREVIOUS: lake.duckdb_input(previous)})
            delta_columns = list(delta.schema.names)
            previous_columns = [row[0] for row in con.execute(f"DESCRIBE {PREVIOUS}").fetchall()]
            rows = int(con.execute(f"SELECT count(*) FROM {DELTA}").fetchall()[0][0])
            previous_rows = int(con.execute(f"SELECT count(*) FROM {PREVIOUS}").fetchall()[0][0])
            sides = (("this run's records", delta_columns), ("the previous lake output", previous_columns))
            for column in key if rows and previous_rows else ():  # (merged only when both have rows)
                for side, names in sides:
                    if column not in names:
                        raise TerminalError(
                            f"{label}: the key column {column!r} is not in {side} (columns: {', '.join(names)})."
                            f"{did_you_mean(column, names)} Fix the declared key (incremental.primary_key or the "
                            "destination's key), or run 'sluice state reset' to read everything again"
                        )
            previous_schema = _schema_of(lake, previous)
        except duckdb.Error as exc:
            con.close()
            raise TerminalError(f"{label}: cannot read the previous lake output to add this run's records: {exc}") from exc
        except BaseException:
            con.close()
            raise
        return cls(con, tuple(key), delta.schema, previous_schema, rows, previous_rows, label)

    def merged_sql(self) -> str:
        """The new version's query (DuckDB): see the module."""
        delta = f"SELECT * EXCLUDE ({quote(ORD_COLUMN)}) FROM {DELTA}"
        if not self.previous_rows:  # the delta's columns first (an empty previous output may have had other ones)
            return f"({delta} ORDER BY {quote(ORD_COLUMN)}) UNION ALL BY NAME SELECT * FROM {PREVIOUS}"
        if not self.delta_rows:
            return f"SELECT * FROM {PREVIOUS}"
        if not self.key:
            return f"SELECT * FROM {PREVIOUS} UNION ALL BY NAME ({delta} ORDER BY {quote(ORD_COLUMN)})"
        keys = ", ".join(quote(k) for k in self.key)
        same = " AND ".join(f"d.{quote(k)} IS NOT DISTINCT FROM p.{quote(k)}" for k in self.key)
        last = f"{delta} QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {quote(ORD_COLUMN)} DESC) = 1"
        kept = f"SELECT p.* FROM {PREVIOUS} AS p WHERE NOT EXISTS (SELECT 1 FROM {DELTA} AS d WHERE {same})"
        return f"{kept} UNION ALL BY NAME ({last})"

    def merged(self) -> pa.RecordBatchReader:
        """The new version: the previous output with this run's records merged in (see the module), each column of the
        Arrow type the two versions share (the delta's, or one holding both: int64 and double give double), not
        DuckDB's (which would turn ``timestamp[ms]`` into ``timestamp[us]``)."""
        import duckdb

        try:
            reader = self._con.sql(self.merged_sql()).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise self._cannot(exc) from exc
        fields = []
        for field in reader.schema:
            known = [s.field(field.name) for s in (self.previous_schema, self.delta_schema) if field.name in s.names]
            try:
                fields.append(pa.unify_schemas([pa.schema([f]) for f in known], promote_options="permissive").field(0))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
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
            "cast the changed column (column_types) or run 'sluice state reset' to read everything again"
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
