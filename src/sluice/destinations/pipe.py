"""Overlap reading the data with loading it: the sink runs in a helper thread, fed through a small queue.

A bulk loader such as ADBC's COPY encodes a batch and then waits for the server to take it; the source
(Parquet decoding, a database cursor) waits in turn while the loader works. :func:`pipe_into` lets both
run at once. The *source* is still read on the calling thread, so sources tied to their thread (an
sqlite3 connection, a generator holding a cursor) keep working; only the sink moves. Batches are cut
into slices of about ``slice_bytes`` (zero-copy) so the server gets its first rows early and the loader
never holds a huge batch.

Example::

    rows = pipe_into(reader, lambda r: cursor.adbc_ingest("t", r, mode="append"))
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import pyarrow as pa

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
    pipe = _Pipe(reader.schema, depth)
    worker = threading.Thread(target=pipe.run, args=(sink,), name="sluice-load", daemon=True)
    worker.start()
    try:
        for batch in reader:
            if not all(pipe.put(piece) for piece in slices(batch, slice_bytes)):
                break
    except BaseException as exc:
        pipe.put(exc)
        worker.join()
        raise
    pipe.put(_END)
    worker.join()
    if pipe.error is not None:
        raise pipe.error
    return pipe.result
