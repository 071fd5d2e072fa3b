"""pipe_into and tee_into: the sink runs in a helper thread while the caller's thread reads the source (and consumes it)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from sluice.destinations.pipe import SinkStopped, SourceAborted, pipe_into, slices, tee_into

SCHEMA = pa.schema([("n", pa.int64())])


def numbers(batches: int, rows: int, seen: list[int] | None = None) -> pa.RecordBatchReader:
    def generate() -> Iterator[pa.RecordBatch]:
        for index in range(batches):
            if seen is not None:
                seen.append(threading.get_ident())
            yield pa.record_batch([pa.array(range(index * rows, (index + 1) * rows), pa.int64())], schema=SCHEMA)

    return pa.RecordBatchReader.from_batches(SCHEMA, generate())


def rows_noting_errors(errors: list[BaseException]) -> Callable[[pa.RecordBatchReader], int]:
    """A sink (or consumer) that reads every row and counts them, noting the error its stream raised instead."""

    def read(reader: pa.RecordBatchReader) -> int:
        try:
            return int(reader.read_all().num_rows)
        except BaseException as exc:
            errors.append(exc)
            raise

    return read


def test_the_sink_gets_every_row_in_order_and_the_source_stays_on_this_thread() -> None:
    seen: list[int] = []
    sink_threads: list[int] = []

    def sink(reader: pa.RecordBatchReader) -> int:
        sink_threads.append(threading.get_ident())
        return int(sum(reader.read_all().column("n").to_pylist()))

    assert pipe_into(numbers(10, 5000, seen), sink) == sum(range(50_000))
    assert set(seen) == {threading.get_ident()}
    assert sink_threads and sink_threads[0] != threading.get_ident()


def test_batches_are_cut_into_slices_of_about_the_given_size() -> None:
    batch = pa.record_batch([pa.array(range(100_000), pa.int64())], schema=SCHEMA)  # 800 kB
    pieces = list(slices(batch, slice_bytes=80_000))
    assert [piece.num_rows for piece in pieces] == [10_000] * 10
    assert list(slices(batch.slice(0, 0))) == []
    assert [piece.num_rows for piece in slices(batch.slice(0, 10), slice_bytes=8)] == [10]  # at least 1,024 rows


def test_a_source_error_is_raised_as_itself_and_stops_the_sink() -> None:
    sink_error: list[BaseException] = []

    def broken() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([1, 2], pa.int64())], schema=SCHEMA)
        raise ConnectionResetError("source went away")

    sink = rows_noting_errors(sink_error)

    with pytest.raises(ConnectionResetError, match="source went away"):
        pipe_into(pa.RecordBatchReader.from_batches(SCHEMA, broken()), sink)
    assert sink_error  # the sink saw the abort instead of a clean end of data
    assert any(isinstance(exc, SourceAborted) or "source failed" in str(exc) for exc in sink_error)


def test_a_sink_error_is_raised_and_the_source_is_not_read_to_the_end() -> None:
    seen: list[int] = []

    def sink(reader: pa.RecordBatchReader) -> int:
        reader.read_next_batch()
        raise ValueError("server refused the rows")

    with pytest.raises(ValueError, match="server refused"):
        pipe_into(numbers(1000, 2000, seen), sink, depth=2)
    assert len(seen) < 1000


def test_tee_gives_both_every_row_and_ends_the_sinks_stream_only_once_the_consumer_returned() -> None:
    events: list[str] = []

    def consume(reader: pa.RecordBatchReader) -> int:
        rows = reader.read_all().num_rows
        events.append("consumer returned")
        return rows

    def sink(reader: pa.RecordBatchReader) -> int:
        total = int(sum(reader.read_all().column("n").to_pylist()))
        events.append("sink stream ended")
        return total

    assert tee_into(numbers(20, 5000), sink, consume) == (100_000, sum(range(100_000)))
    assert events == ["consumer returned", "sink stream ended"]


def test_tee_overlaps_the_sink_with_the_consumer_under_back_pressure() -> None:
    produced: list[int] = []
    first_seen_at: list[int] = []

    def sink(reader: pa.RecordBatchReader) -> int:
        for _ in reader:
            if not first_seen_at:
                first_seen_at.append(len(produced))
        return 0

    tee_into(numbers(200, 100, produced), sink, lambda reader: reader.read_all().num_rows, depth=2)
    assert len(produced) == 200
    assert first_seen_at and first_seen_at[0] <= 5  # a queue of 2: the sink starts long before the source ends


def test_tee_a_failing_consumer_makes_the_sinks_stream_raise_and_its_error_is_raised() -> None:
    sink_error: list[BaseException] = []

    def consume(reader: pa.RecordBatchReader) -> int:
        reader.read_all()
        raise OSError("disk full")  # after every batch: only the end of the sink's stream is left

    sink = rows_noting_errors(sink_error)

    with pytest.raises(OSError, match="disk full"):
        tee_into(numbers(5, 10), sink, consume)
    assert len(sink_error) == 1 and isinstance(sink_error[0], SourceAborted)


def test_tee_a_failing_sink_stops_the_consumer_and_its_error_is_raised() -> None:
    seen: list[int] = []
    consumer_error: list[BaseException] = []

    consume = rows_noting_errors(consumer_error)

    def sink(reader: pa.RecordBatchReader) -> int:
        reader.read_next_batch()
        raise ValueError("server refused the rows")

    with pytest.raises(ValueError, match="server refused"):
        tee_into(numbers(1000, 2000, seen), sink, consume, depth=2)
    assert len(seen) < 1000
    assert len(consumer_error) == 1 and isinstance(consumer_error[0], SinkStopped)
