"""Overlap reading the data with loading it: the sink runs in a helper thread, fed through a small queue.

A bulk loader such as ADBC's COPY encodes a batch and then waits for the server to take it; the source
(Parquet decoding, a database cursor) waits in turn while the loader works. :func:`pipe_into` lets both
run at once. The *source* is still read on the calling thread, so sources tied to their thread (an
sqlite3 connection, a generator holding a cursor) keep working; only the sink moves. Batches are cut
into slices of about ``slice_bytes`` (zero-copy) so the server gets its first rows early and the loader
never holds a huge batch.

:func:`tee_into` does the same while the calling thread also *consumes* every batch itself (writes the
lake's Parquet file): both get the same batches, the sink's stream ending only once the consumer is done,
so a sink that commits at its end (a destination's transaction) commits only after the consumer succeeded.

Example::

    rows = pipe_into(reader, lambda r: cursor.adbc_ingest("t", r, mode="append"))
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pyarrow as pa

T = TypeVar("T")

SLICE_BYTES = 1 << 20  # ~1 MiB of Arrow data per slice: small enough to stream, large enough to amortise
QUEUE_DEPTH = 8
_END = object()
_POLL_S = 0.05


class SourceAborted(Exception):
    """Raised inside the sink when the source failed; the caller re-raises the source's own error."""


def slices(batch: pa.RecordBatch, slice_bytes: int = SLICE_BYTES) -> Iterator[pa.RecordBatch]:
    """``batch`` cut into zero-copy slices of about ``slice_bytes`` (at least 1,024 rows each)."""
    if batch.num_rows == 0:
        return
    per_row = max(1, batch.nbytes // batch.num_rows)
    step = max(1024, slice_bytes // per_row)
    for offset in range(0, batch.num_rows, step):
        yield batch.slice(offset, step)


class _Pipe:
    def __init__(self, schema: pa.Schema, depth: int) -> None:
        self.schema = schema
        self.queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.finished = threading.Event()
        self.result: int = 0
        self.error: BaseException | None = None

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise SourceAborted("the source failed while its rows were being loaded") from item
            yield item

    def run(self, sink: Callable[[pa.RecordBatchReader], int]) -> None:
        try:
            self.result = sink(pa.RecordBatchReader.from_batches(self.schema, self._batches()))
        except BaseException as exc:  # handed to the calling thread
            self.error = exc
        finally:
            self.finished.set()

    def put(self, item: object) -> bool:
        """Queue ``item``; False once the sink has stopped (it failed), so the source can stop too."""
        while not self.finished.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False


class SinkStopped(Exception):
    """Raised into the consumer of :func:`tee_into` when the sink failed; the caller re-raises the sink's error."""


def pipe_into(
    reader: pa.RecordBatchReader,
    sink: Callable[[pa.RecordBatchReader], int],
    depth: int = QUEUE_DEPTH,
    slice_bytes: int = SLICE_BYTES,
) -> int:
    """Run ``sink`` on a reader of ``reader``'s batches in a helper thread; return what ``sink`` returns.

    An error from the source is raised here as itself (the sink is stopped first); an error from the
    sink is raised here too.
    """
    return tee_into(reader, sink, _drain, depth, slice_bytes)[1]


def tee_into(
    reader: pa.RecordBatchReader,
    sink: Callable[[pa.RecordBatchReader], int],
    consume: Callable[[pa.RecordBatchReader], T],
    depth: int = QUEUE_DEPTH,
    slice_bytes: int = SLICE_BYTES,
) -> tuple[T, int]:
    """Feed ``reader``'s batches both to ``consume`` (on the calling thread) and to ``sink`` (in a helper
    thread, zero-copy slices of about ``slice_bytes`` through a queue of ``depth``: back-pressure on the
    consumer); return ``(what consume returns, what sink returns)``.

    The sink's stream ends only after ``consume`` has returned; when ``consume`` raises (or the source
    does), the sink's stream raises :class:`SourceAborted` instead, so a sink that commits when its stream
    ends never commits what the consumer failed to keep. When the sink fails, the consumer's stream raises
    :class:`SinkStopped` and the sink's error is raised here; otherwise the consumer's (or source's) error is.
    """
    pipe = _Pipe(reader.schema, depth)
    worker = threading.Thread(target=pipe.run, args=(sink,), name="sluice-load", daemon=True)
    worker.start()

    stopped: list[SinkStopped] = []

    def batches() -> Iterator[pa.RecordBatch]:
        feeding = True
        for batch in reader:
            if feeding and not all(pipe.put(piece) for piece in slices(batch, slice_bytes)):
                if pipe.error is not None:
                    stopped.append(SinkStopped("the sink failed while the data was being consumed"))
                    raise stopped[0]
                feeding = False  # it returned early, content: the consumer still gets everything
            yield batch

    try:
        consumed = consume(pa.RecordBatchReader.from_batches(reader.schema, batches()))
    except BaseException as exc:
        pipe.put(exc)
        worker.join()
        if stopped and pipe.error is not None:
            raise pipe.error from None  # the sink failed first: the consumer only stopped because of it
        raise
    pipe.put(_END)
    worker.join()
    if pipe.error is not None:
        raise pipe.error
    return consumed, pipe.result


def _drain(reader: pa.RecordBatchReader) -> None:
    for _ in reader:
        pass
