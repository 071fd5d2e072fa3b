"""pipe_into: the sink runs in a helper thread while the caller's thread reads the source."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from sluice.destinations.pipe import SourceAborted, pipe_into, slices

SCHEMA = pa.schema([("n", pa.int64())])


def numbers(batches: int, rows: int, seen: list[int] | None = None) -> pa.RecordBatchReader:
    def generate() -> Iterator[pa.RecordBatch]:
        for index in range(batches):
            if seen is not None:
                seen.append(threading.get_ident())
            yield pa.record_batch([pa.array(range(index * rows, (index + 1) * rows), pa.int64())], schema=SCHEMA)

    return pa.RecordBatchReader.from_batches(SCHEMA, generate())


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

    def sink(reader: pa.RecordBatchReader) -> int:
        try:
            return int(reader.read_all().num_rows)
        except BaseException as exc:
            sink_error.append(exc)
            raise

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
