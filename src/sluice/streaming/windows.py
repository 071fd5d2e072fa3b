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
- The watermark is per source partition, as Flink's Kafka source does it ("Watermark Strategies and the Kafka
  Connector", Flink's documentation, and ``WatermarkOutputMultiplexer`` in flink-core, which combines the
  per-split outputs by their minimum): each partition's watermark is the largest event time read from it minus
  the watermark delay, and the operator's watermark is the **minimum** over the partitions (:class:`Sources`),
  never going back. A partition that has been read to its end (:attr:`Sources.idle`: at the high watermark, or at
  the ``--available-now`` target) does not hold it back (Flink's idleness, ``withIdleness``, decided by offsets
  here instead of a timer): it counts as being at the largest event time of all partitions. So a micro-batch that
  reaches far into one partition's event time and not into another's closes no window the slower partition still
  has records for, and records of a partition in event-time order are never late. Without :class:`Sources` the
  whole stream is one partition: ``max event time seen - watermark delay`` (Spark Structured Streaming's
  rule, whose watermark is the maximum over all partitions: ``EventTimeWatermarkExec``). It is advanced at the
  end of each micro-batch and every window whose end is at or before it is then emitted, once, with its
  aggregates ("append" mode; Spark emits it in its following no-data batch).
- A record is checked against the watermark of the batches before its own: its windows that end at or before
  that watermark were already emitted and do not get it. When all its windows were emitted, the record is
  *late*: counted, and dropped or returned for a side output (Flink's ``sideOutputLateData``). A record whose
  event time is null or unreadable cannot be placed in a window: it is returned in ``invalid`` (with
  ``invalid_reason``) for the caller's dead-letter topic.
- Aggregates are SQL aggregate expressions run by DuckDB. When all of them are decomposable (``count``,
  ``sum``, ``min``, ``max``, ``avg`` and expressions over them: :mod:`~sluice.streaming.window_partials`), the
  operator keeps one row of partial aggregates per open window and group, merged with each micro-batch's, and
  computes the aggregates from them when the window closes. Otherwise (``count(DISTINCT u)``, ``quantile_cont``,
  ``list``...) it keeps the raw records of open windows (only the columns the windows read), those of the last
  ``size + watermark delay`` of event time (about that times the record rate), and aggregates a window with
  DuckDB when it closes.

The state (:attr:`WindowResult.state`) is an Arrow table: those rows, plus the watermark, each partition's largest
event time (JSON; a state saved before there was one is read with none: each partition holds the watermark back
until its first record) and the window definition in its schema metadata. Save it with each micro-batch's commit
(:func:`state_to_bytes`, Arrow IPC) and pass it back (:func:`state_from_bytes`) to continue after a restart: the
windows emitted are then exactly those of an uninterrupted run over the same micro-batches.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import TerminalError
from sluice.streaming import window_sql
from sluice.streaming.window_options import EVENT_US, WINDOW_COLUMNS, WindowOptions
from sluice.streaming.window_partials import partial_plan
from sluice.streaming.window_sql import TIME, WINDOW_START

STATE_VERSION = b"1"
_WATERMARK_KEY = b"sluice.window.watermark"
_WINDOWS_KEY = b"sluice.window.definition"
_VERSION_KEY = b"sluice.window.version"
_SOURCES_KEY = b"sluice.window.sources"
_WHOLE = ""  # the one source of a stream processed without Sources
_FAR_FUTURE = 2**62  # microseconds after the epoch: flush() closes every window before it


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


@dataclass(frozen=True, slots=True)
class Sources:
    """Where a micro-batch's rows come from, for per-partition watermarks (:meth:`WindowOperator.process`).

    - ``codes``: one integer per row of the batch, the index of its partition in ``names``.
    - ``names``: every partition the stream reads (``topic:partition``), those without a record in this batch too:
      a partition never seen holds the watermark back until its first record, unless idle.
    - ``idle``: the names of partitions read to their end when the micro-batch was cut (no record left behind
      them): they do not hold the watermark back.
    """

    codes: np.ndarray[Any, np.dtype[np.int64]]
    names: Sequence[str]
    idle: Collection[str] = field(default_factory=frozenset)


RESET_HINT = (
    "to start the windows again, remove the object's output from the lake (the folder <layer>/<name>: its "
    "micro-batches, offsets and window state; the stream then reads its topics from the start) or rename the object"
)


class WindowOperator:
    """Event-time windows over a stream of Arrow micro-batches; one instance per streaming object, one thread.

    ``state`` is a :attr:`WindowResult.state` saved by an earlier run (None: start empty). Raises
    TerminalError when that state was saved for another window definition (type, size, slide, time column;
    with partial aggregates also group_by and aggregates). ``partials`` overrides ``options.state`` (True:
    partial aggregates when the aggregates allow it; False: the records).
    """

    def __init__(self, options: WindowOptions, state: pa.Table | None = None, *, partials: bool | None = None) -> None:
        self.options = options
        self._size = options.size_us
        self._slide = options.slide_us
        self._delay = options.watermark_us
        self._needed = options.needed_columns()
        if partials is None:
            partials = options.state == "auto"
        self._plan = partial_plan(options.aggregates, options.group_by) if partials else None
        definition = f"{options.type} size={self._size}us slide={self._slide}us time_column={options.time_column}"
        if self._plan is not None:
            definition += f" partials group_by={json.dumps(options.group_by)} aggregates={json.dumps(options.aggregates)}"
        self._definition = definition.encode()
        self._con = window_sql.cursor()
        self._closed_schema: tuple[pa.Schema, pa.Schema] | None = None  # (state's, closed's) when nothing closes
        self._watermark: int | None = None
        self._fronts: dict[str, int] = {}  # each source partition's largest event time (microseconds)
        self._rows: pa.Table | None = None  # open windows' records, or their partial aggregates
        if state is not None:
            self._restore(state)

    @property
    def watermark(self) -> dt.datetime | None:
        """The current watermark (UTC), None before the first record with an event time."""
        return None if self._watermark is None else _datetime(self._watermark)

    @property
    def keeps_partials(self) -> bool:
        """True when the state holds partial aggregates per window and group, False when it holds records."""
        return self._plan is not None

    @property
    def state_records(self) -> int:
        """Rows in the state (records of open windows, or one per open window and group), for metrics."""
        return 0 if self._rows is None else self._rows.num_rows

    @property
    def state_bytes(self) -> int:
        """The size of the state's rows in memory, in bytes."""
        return 0 if self._rows is None else self._rows.nbytes

    def process(self, batch: pa.Table | pa.RecordBatch, sources: Sources | None = None) -> WindowResult:
        """Add one micro-batch (in offset order), advance the watermark and emit the windows it closes.

        ``sources``: the partition of each row and the partitions read to their end, for the watermark per partition
        (see the module); None: the stream is one partition.

        Raises TerminalError when the time column is missing or of a type that is not a time, when a
        group_by column is missing, or when DuckDB cannot run the aggregates (its message quoted).
        """
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        event_us = window_sql.event_times(self._con, table, self.options)
        valid = pc.is_valid(event_us)
        invalid = table.filter(pc.invert(valid))
        codes = None if sources is None else np.asarray(sources.codes)
        if invalid.num_rows:
            table, event_us = table.filter(valid), event_us.filter(valid)
            if codes is not None:
                codes = codes[valid.to_numpy(zero_copy_only=False)]
        times = event_us.to_numpy()
        late_mask = np.zeros(len(times), dtype=bool)
        if self._watermark is not None:
            late_mask = self._last_end(times) <= self._watermark
        late_records = int(late_mask.sum())
        late = table.filter(late_mask) if self.options.late == "side_output" else None
        previous = self._watermark
        if len(times) > late_records:
            kept = self._prune(table)
            time_index = kept.schema.get_field_index(self.options.time_column)
            kept = kept.set_column(time_index, self.options.time_column, event_us.cast(TIME)).append_column(EVENT_US, event_us)
            if late_records:
                kept = kept.filter(~late_mask)
            self._add(kept, previous)
        candidate = self._advance(times, codes, sources)
        if candidate is not None:
            self._watermark = candidate if previous is None else max(previous, candidate)
        closed = self._close(previous, self._watermark)
        return self._result(closed, late, late_records, invalid)

    def flush(self) -> WindowResult:
        """Emit every open window now, whatever the watermark (the end of a bounded input; not for streaming).

        The watermark moves to the end of the last window emitted, so records for those windows are late after.
        """
        empty = pa.table({})
        if self._rows is None or self._rows.num_rows == 0:
            return self._result(self._close(None, None), None, 0, empty)
        previous = self._watermark
        if self._plan is None:
            last_end = int(self._last_end(self._rows.column(EVENT_US).to_numpy()).max())
        else:
            last_end = int(pc.max(self._rows.column(WINDOW_START)).as_py()) + self._size
        closed = self._close(previous, _FAR_FUTURE)
        self._watermark = last_end if previous is None else max(previous, last_end)
        return self._result(closed, None, 0, empty)

    def close(self) -> None:
        """Release the operator's DuckDB cursor."""
        self._con.close()

    def state(self) -> pa.Table:
        """The state to save with the micro-batch's commit: the rows, watermark and definition in metadata."""
        empty = pa.table({WINDOW_START if self._plan is not None else EVENT_US: pa.array([], pa.int64())})
        rows = self._rows if self._rows is not None else empty
        metadata = dict(rows.schema.metadata or {})
        watermark = b"" if self._watermark is None else str(self._watermark).encode()
        fronts = json.dumps(self._fronts, sort_keys=True).encode()
        metadata.update(
            {_VERSION_KEY: STATE_VERSION, _WINDOWS_KEY: self._definition, _WATERMARK_KEY: watermark, _SOURCES_KEY: fronts}
        )
        return rows.replace_schema_metadata(metadata)

    # -- internals

    def _result(self, closed: pa.Table, late: pa.Table | None, late_records: int, invalid: pa.Table) -> WindowResult:
        reason = f"null or unreadable event time in column {self.options.time_column!r} (window.time_column)"
        return WindowResult(closed, late, late_records, invalid, reason, self.state(), self.watermark)

    def _restore(self, state: pa.Table) -> None:
        metadata = state.schema.metadata or {}
        if metadata.get(_VERSION_KEY) != STATE_VERSION:
            raise TerminalError(f"window state: not a window state saved by this version of Sluice: {RESET_HINT}")
        saved = metadata.get(_WINDOWS_KEY, b"")
        if saved != self._definition:
            raise TerminalError(
                f"window state: saved for windows {saved.decode()!r}, the options now say {self._definition.decode()!r}: "
                f"restore the old window options, or {RESET_HINT}"
            )
        watermark = metadata.get(_WATERMARK_KEY, b"")
        self._watermark = int(watermark) if watermark else None
        fronts = json.loads(metadata.get(_SOURCES_KEY, b"{}"))  # absent from states saved before per-partition fronts
        self._fronts = {str(name): int(at) for name, at in fronts.items()}
        self._rows = state.replace_schema_metadata(None) if state.num_columns > 1 else None

    def _advance(self, times: np.ndarray, codes: np.ndarray | None, sources: Sources | None) -> int | None:
        """Record each partition's largest event time; the watermark they allow: the minimum over the partitions
        that are not idle of their largest event time, minus the delay (None: one of them has no record yet). Idle
        partitions count as being at the largest event time of all; when all are idle, that is the watermark."""
        fronts = self._fronts
        if sources is None or codes is None:
            if len(times):
                fronts[_WHOLE] = max(fronts.get(_WHOLE, -_FAR_FUTURE), int(times.max()))
            names: Collection[str] = [_WHOLE]
            idle: Collection[str] = ()
        else:
            names, idle = sources.names, sources.idle
            if len(times):
                found = np.full(len(names), -_FAR_FUTURE, dtype=np.int64)
                np.maximum.at(found, codes, times)
                for index in np.flatnonzero(found > -_FAR_FUTURE).tolist():
                    name = names[index]
                    fronts[name] = max(fronts.get(name, -_FAR_FUTURE), int(found[index]))
        seen = [fronts[name] for name in names if name in fronts]
        if not seen:
            return None
        held = [fronts.get(name) for name in names if name not in idle]
        if any(at is None for at in held):
            return None
        return min([max(seen), *(at for at in held if at is not None)]) - self._delay

    def _last_end(self, times: np.ndarray) -> np.ndarray:
        """The end of the last window each event time (microseconds) belongs to."""
        return (times // self._slide) * self._slide + self._size

    def _prune(self, table: pa.Table) -> pa.Table:
        if self._needed is None:
            return table
        return table.select([name for name in table.column_names if name.lower() in self._needed])

    def _add(self, kept: pa.Table, previous: int | None) -> None:
        """Keep the micro-batch's records that are not late: as records, or merged into the partial aggregates."""
        if self._plan is not None:
            low = -_FAR_FUTURE if previous is None else previous
            plan, merge = self._plan, self._rows is not None
            sql = window_sql.partials(self.options, plan.rows, plan.combines, self._size, self._slide, low, merge_state=merge)
            tables = {"records": kept} if self._rows is None else {"records": kept, "state": self._rows}
            self._rows = window_sql.run(self._con, sql, tables)
        elif self._rows is None:
            self._rows = kept
        else:
            try:
                self._rows = pa.concat_tables([self._rows, kept], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise TerminalError(
                    f"window: a micro-batch's columns do not fit those of the open windows' records: {exc}"
                ) from exc

    def _close(self, previous: int | None, watermark: int | None) -> pa.Table:
        """The windows ending in (previous, watermark], aggregated; the rows no open window needs are dropped."""
        if self._rows is None or watermark is None:
            return pa.table({name: pa.array([], TIME) for name in WINDOW_COLUMNS})
        low = -_FAR_FUTURE if previous is None else previous
        if self._plan is not None:
            ends = pc.cast(self._rows.column(WINDOW_START), pa.int64()).to_numpy() + self._size
            closing = ends <= watermark
        else:
            events = self._rows.column(EVENT_US).to_numpy()
            closing = (events > low - self._size) & (events < watermark)
        known = self._closed_schema
        if known is not None and known[0] == self._rows.schema and not closing.any():
            closed = known[1].empty_table()  # no window ends in (low, watermark]: DuckDB is not needed
        else:
            if self._plan is not None:
                sql, tables = window_sql.finals(self.options, self._plan.finals), {"closed": self._rows.filter(closing)}
            else:
                sql, tables = (
                    window_sql.aggregate_records(self.options, self._size, self._slide, low, watermark),
                    {"records": self._rows},
                )
            closed = window_sql.with_window_columns(window_sql.run(self._con, sql, tables), self._size)
            self._closed_schema = (self._rows.schema, closed.schema)
        if self._plan is not None:
            if closing.any():
                self._rows = self._rows.filter(~closing)
        elif watermark != previous and self._rows.num_rows:
            keep = self._last_end(self._rows.column(EVENT_US).to_numpy()) > watermark
            if not keep.all():
                self._rows = self._rows.filter(keep)
        return closed


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
        raise TerminalError(f"window state: the saved bytes are not an Arrow IPC stream ({exc}): {RESET_HINT}") from exc


def _datetime(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
