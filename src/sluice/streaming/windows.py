"""Tumbling and sliding event-time windows with a watermark: a stateful operator over Arrow micro-batches.

>>> import datetime as dt, msgspec, pyarrow as pa
>>> options = msgspec.convert({"type": "tumbling", "size": "1m", "time_column": "ts", "watermark": "10s",
...                            "aggregates": {"n": "count(*)", "total": "sum(amount)"}}, WindowOptions)
>>> at = lambda s: dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=s)
>>> operator = WindowOperator(options)
>>> first = operator.process(pa.table({"ts": [at(1), at(50), at(70)], "amount": [1, 2, 3]}))
>>> first.closed.num_rows, first.watermark == at(60)   # 70 s - 10 s reaches the end of [0 s, 60 s)
(1, True)
>>> int(first.closed.to_pylist()[0]["total"]), first.late_records  # DuckDB sums BIGINT as HUGEINT (decimal)
(3, 0)
>>> operator.process(pa.table({"ts": [at(5)], "amount": [9]})).late_records   # [0 s, 60 s) was emitted
1

Semantics (Spark Structured Streaming's event-time windows in "append" output mode, and Flink's
``WindowOperator``; the Dataflow model paper, Akidau et al., VLDB 2015):

- Windows are aligned to the epoch (1970-01-01T00:00:00Z): a tumbling window is ``[k*size, (k+1)*size)``; a
  sliding window starts every ``slide`` and lasts ``size``, so a record belongs to about size/slide windows.
- The watermark is ``max event time seen - watermark delay``; it never goes back. It is advanced at the end
  of each micro-batch (by the batch's largest event time) and every window whose end is at or before it is
  then emitted, once, with its aggregates ("append" mode; Spark emits it in its following no-data batch).
- A record is checked against the watermark of the batches before its own: its windows that end at or before
  that watermark were already emitted and do not get it. When all its windows were emitted, the record is
  *late*: counted, and dropped or returned for a side output (Flink's ``sideOutputLateData``). A record whose
  event time is null or unreadable cannot be placed in a window: it is returned in ``invalid`` (with
  ``invalid_reason``) for the caller's dead-letter topic.
- Aggregates are any SQL aggregate expressions (DuckDB): the operator keeps the raw records of open windows
  (only the columns the windows read) and aggregates a window with DuckDB when it closes. The records kept are
  those of the last ``size + watermark delay`` of event time (about that times the record rate).

The state (:attr:`WindowResult.state`) is an Arrow table: those records, plus the watermark and the window
definition in its schema metadata. Save it with each micro-batch's commit (:func:`state_to_bytes`, Arrow
IPC) and pass it back (:func:`state_from_bytes`) to continue after a restart: the windows emitted are then
exactly those of an uninterrupted run over the same micro-batches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import TerminalError
from sluice.streaming.window_options import EVENT_US, WINDOW_COLUMNS, WindowOptions
from sluice.transforms.sql import quote_identifier

STATE_VERSION = b"1"
_WATERMARK_KEY = b"sluice.window.watermark"
_WINDOWS_KEY = b"sluice.window.definition"
_VERSION_KEY = b"sluice.window.version"
_FAR_FUTURE = 2**62  # microseconds after the epoch: flush() closes every window before it
_TIME = pa.timestamp("us", tz="UTC")
_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What one micro-batch through :meth:`WindowOperator.process` produced.

    - ``closed``: one row per (window_start, window_end, group_by...) emitted by this batch, with the aggregates;
      window_start/window_end are timestamp[us, UTC]. Sorted by window_start then group. Zero rows when no
      window closed (then, before any record was seen, its only columns are window_start and window_end).
    - ``late``: the late records (all their columns) when ``late: side_output``, else None; ``late_records``
      counts them either way.
    - ``invalid``: records whose event time is null or unreadable (all their columns), for the dead-letter
      topic with ``invalid_reason``.
    - ``state``: what to save with the micro-batch's commit (see :func:`state_to_bytes`).
    - ``watermark``: the watermark after this batch (UTC), None until a record with an event time was seen.
    """

    closed: pa.Table
    late: pa.Table | None
    late_records: int
    invalid: pa.Table
    invalid_reason: str
    state: pa.Table
    watermark: dt.datetime | None


class WindowOperator:
    """Event-time windows over a stream of Arrow micro-batches; one instance per streaming object, one thread.

    ``state`` is a :attr:`WindowResult.state` saved by an earlier run (None: start empty). Raises
    TerminalError when that state was saved for another window definition (type, size, slide, time column).
    """

    def __init__(self, options: WindowOptions, state: pa.Table | None = None) -> None:
        self.options = options
        self._size = options.size_us
        self._slide = options.slide_us
        self._delay = options.watermark_us
        self._needed = options.needed_columns()
        self._definition = f"{options.type} size={self._size}us slide={self._slide}us time_column={options.time_column}".encode()
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        self._watermark: int | None = None
        self._records: pa.Table | None = None
        if state is not None:
            self._restore(state)

    @property
    def watermark(self) -> dt.datetime | None:
        """The current watermark (UTC), None before the first record with an event time."""
        return None if self._watermark is None else _datetime(self._watermark)

    @property
    def state_records(self) -> int:
        """How many records of open windows the state holds (for metrics and back-pressure)."""
        return 0 if self._records is None else self._records.num_rows

    @property
    def state_bytes(self) -> int:
        """The size of the state's records in memory, in bytes."""
        return 0 if self._records is None else self._records.nbytes

    def process(self, batch: pa.Table | pa.RecordBatch) -> WindowResult:
        """Add one micro-batch (in offset order), advance the watermark and emit the windows it closes.

        Raises TerminalError when the time column is missing or of a type that is not a time, when a
        group_by column is missing, or when DuckDB cannot run the aggregates (its message quoted).
        """
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        event_us = self._event_times(table)
        valid = pc.is_valid(event_us)
        invalid = table.filter(pc.invert(valid))
        if invalid.num_rows:
            table, event_us = table.filter(valid), event_us.filter(valid)
        times = event_us.to_numpy()
        late_mask = np.zeros(len(times), dtype=bool)
        if self._watermark is not None:
            late_mask = self._last_end(times) <= self._watermark
        late_records = int(late_mask.sum())
        late = table.filter(late_mask) if self.options.late == "side_output" else None
        if len(times):
            kept = self._prune(table).append_column(EVENT_US, event_us)
            if late_records:
                kept = kept.filter(~late_mask)
            self._append(kept)
        previous = self._watermark
        if len(times):
            candidate = int(times.max()) - self._delay
            self._watermark = candidate if previous is None else max(previous, candidate)
        closed = self._close(previous, self._watermark)
        return self._result(closed, late, late_records, invalid)

    def flush(self) -> WindowResult:
        """Emit every open window now, whatever the watermark (the end of a bounded input; not for streaming).

        The watermark moves to the end of the last window emitted, so records for those windows are late after.
        """
        empty = pa.table({})
        if self._records is None or self._records.num_rows == 0:
            return self._result(self._close(None, None), None, 0, empty)
        previous = self._watermark
        last_end = int(self._last_end(self._records.column(EVENT_US).to_numpy()).max())
        closed = self._close(previous, _FAR_FUTURE)
        self._watermark = last_end if previous is None else max(previous, last_end)
        return self._result(closed, None, 0, empty)

    def close(self) -> None:
        """Release the operator's DuckDB connection."""
        self._con.close()

    # -- internals

    def _result(self, closed: pa.Table, late: pa.Table | None, late_records: int, invalid: pa.Table) -> WindowResult:
        reason = f"null or unreadable event time in column {self.options.time_column!r} (window.time_column)"
        return WindowResult(closed, late, late_records, invalid, reason, self.state(), self.watermark)

    def state(self) -> pa.Table:
        """The state to save with the micro-batch's commit: open windows' records, watermark and definition in metadata."""
        records = self._records if self._records is not None else pa.table({EVENT_US: pa.array([], pa.int64())})
        metadata = dict(records.schema.metadata or {})
        metadata.update({
            _VERSION_KEY: STATE_VERSION,
            _WINDOWS_KEY: self._definition,
            _WATERMARK_KEY: b"" if self._watermark is None else str(self._watermark).encode(),
        })
        return records.replace_schema_metadata(metadata)

    def _restore(self, state: pa.Table) -> None:
        metadata = state.schema.metadata or {}
        if metadata.get(_VERSION_KEY) != STATE_VERSION or EVENT_US not in state.column_names:
            raise TerminalError("window state: not a window state saved by this version of Sluice: reset the stream's state")
        saved = metadata.get(_WINDOWS_KEY, b"")
        if saved != self._definition:
            raise TerminalError(
                f"window state: saved for windows {saved.decode()!r}, the options now say {self._definition.decode()!r}: "
                "restore the old window options, or reset the stream's state to start the windows again"
            )
        watermark = metadata.get(_WATERMARK_KEY, b"")
        self._watermark = int(watermark) if watermark else None
        self._records = state.replace_schema_metadata(None) if state.num_columns > 1 else None

    def _event_times(self, table: pa.Table) -> pa.Array:
        """The time column as int64 microseconds since the epoch (UTC), null where missing or unreadable."""
        name = self.options.time_column
        if name not in table.column_names:
            columns = ", ".join(table.column_names) or "none"
            raise TerminalError(f"window.time_column: {name!r} is not a column of the micro-batch (columns: {columns}): fix the option")
        for column in self.options.group_by:
            if column not in table.column_names:
                raise TerminalError(f"window.group_by: {column!r} is not a column of the micro-batch: fix the option")
        column = table.column(name)
        kind = column.type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            micros = pc.cast(column, pa.timestamp("us"), safe=False)  # a zone's instants are stored in UTC
        elif any(check(kind) for check in _STRINGS):
            relation = self._con.from_arrow(pa.table({"t": column}))
            micros = relation.select("epoch_us(TRY_CAST(t AS TIMESTAMPTZ)) AS t").to_arrow_table().column("t")
        else:
            raise TerminalError(
                f"window.time_column: {name!r} is {kind}, not a time: give a timestamp column or ISO-8601 strings "
                "(2024-05-01T12:00:00Z); cast it in the object's SQL if needed"
            )
        return pc.cast(micros, pa.int64()).combine_chunks()

    def _last_end(self, times: np.ndarray) -> np.ndarray:
        """The end of the last window each event time (microseconds) belongs to."""
        return (times // self._slide) * self._slide + self._size

    def _prune(self, table: pa.Table) -> pa.Table:
        if self._needed is None:
            return table
        return table.select([name for name in table.column_names if name.lower() in self._needed])

    def _append(self, kept: pa.Table) -> None:
        if self._records is None:
            self._records = kept
            return
        try:
            self._records = pa.concat_tables([self._records, kept], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TerminalError(f"window: a micro-batch's columns do not fit those of the open windows' records: {exc}") from exc

    def _close(self, previous: int | None, watermark: int | None) -> pa.Table:
        """The windows ending in (previous, watermark], aggregated; the records no open window needs are dropped."""
        if self._records is None or watermark is None:
            return pa.table({name: pa.array([], _TIME) for name in WINDOW_COLUMNS})
        low = -_FAR_FUTURE if previous is None else previous
        closed = self._aggregate(low, watermark)  # an empty range (low == watermark) still gives the columns
        if watermark != previous and self._records.num_rows:
            keep = self._last_end(self._records.column(EVENT_US).to_numpy()) > watermark
            if not keep.all():
                self._records = self._records.filter(keep)
        return closed

    def _aggregate(self, low: int, high: int) -> pa.Table:
        """DuckDB over the kept records: one row per window ending in (low, high] and group, sorted."""
        size, slide = self._size, self._slide
        event, start = quote_identifier(EVENT_US), "__sluice_window_start"
        floor = f"({event} - ((({event} % {slide}) + {slide}) % {slide}))"
        count = -(-size // slide)
        if count == 1:
            expand = f"SELECT records.*, {floor} AS {start} FROM records"
        else:
            expand = f"SELECT records.*, {floor} - __sluice_k.k * {slide} AS {start} FROM records, range({count}) AS __sluice_k(k)"
        groups = [quote_identifier(column) for column in self.options.group_by]
        aggregates = [f"{sql} AS {quote_identifier(name)}" for name, sql in self.options.aggregates.items()]
        sql = (
            f"SELECT {', '.join([start, *groups, *aggregates])} FROM ({expand} "
            f"WHERE {event} > {low - size} AND {event} < {high}) "
            f"WHERE {start} + {size} > {event} AND {start} + {size} > {low} AND {start} + {size} <= {high} "
            f"GROUP BY {', '.join([start, *groups])} ORDER BY {', '.join(f'{c} NULLS LAST' for c in [start, *groups])}"
        )
        assert self._records is not None
        try:
            self._con.register("records", self._records)
            table = self._con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            message = str(exc).strip().splitlines()[0]
            raise TerminalError(f"window.aggregates: DuckDB cannot compute them: {message}: fix the aggregate expressions") from exc
        finally:
            self._con.unregister("records")
        starts = table.column(start)
        window_start = pc.cast(starts, pa.int64()).cast(_TIME)
        window_end = pc.add(pc.cast(starts, pa.int64()), size).cast(_TIME)
        rest = table.drop_columns([start])
        return pa.table([window_start, window_end, *rest.columns], names=[*WINDOW_COLUMNS, *rest.column_names])


def state_to_bytes(state: pa.Table) -> bytes:
    """A :attr:`WindowResult.state` as Arrow IPC stream bytes (types and metadata exact), for the micro-batch commit."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, state.schema) as writer:
        writer.write_table(state)
    return bytes(sink.getvalue().to_pybytes())


def state_from_bytes(data: bytes) -> pa.Table:
    """The state :func:`state_to_bytes` wrote, for :class:`WindowOperator`'s ``state``. Raises TerminalError if unreadable."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except pa.ArrowInvalid as exc:
        raise TerminalError(f"window state: the saved bytes are not an Arrow IPC stream ({exc}): reset the stream's state") from exc


def _datetime(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
