"""Streaming Parquet parts of one dataset version, optionally Hive-partitioned, hashed while written.

:func:`write_parts` turns a stream of Arrow batches into zstd Parquet files under one folder of any
pyarrow file system (local or S3): ``part-00000.parquet`` when unpartitioned, else one file per
partition value in Hive-style folders (``dt=2026-11-30/part-00000.parquet``; the layout of Apache Hive,
read back by ``pyarrow.dataset``'s ``hive`` partitioning). Partition columns are left out of the files
(their values live in the folder names), as Hive does.

Bytes are hashed (xxh3-128) as they are written, so the content hash costs no second read. Rows are
gathered into row groups of :data:`ROW_GROUP_ROWS` whatever the incoming batch sizes, so identical data
gives identical files and the same hash.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TerminalError

ROW_GROUP_ROWS = 128 * 1024
MAX_OPEN_PARTITIONS = 512
DICTIONARY_PAGE_BYTES = 64 * 1024
"""Dictionary-encode a column chunk only while its dictionary stays under 64 KiB, then fall back to plain
encoding. pyarrow's default (1 MiB) holds the 131,072 values of a whole row group of unique int64 ids, so
every unique numeric column was dictionary-encoded in full: measured on issue 12's bench data, 2-3x the
encoding CPU and 25-50 % larger files than with this limit (low-cardinality columns keep their dictionary)."""
WRITER_OPTIONS: dict[str, Any] = {"compression": "zstd", "dictionary_pagesize_limit": DICTIONARY_PAGE_BYTES}
"""How every Parquet file of the lake is written (zstd, and the dictionary limit above)."""
PART = "part-00000.parquet"
"""The name of a version's (or a partition folder's) one Parquet file."""
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's name for a null partition value


class _HashingSink:
    """A writable file object that hashes every byte on its way to a pyarrow output stream."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self.stream = stream
        self.digest = xxhash.xxh3_128()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        self.stream.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass  # the stream flushes (uploads) on close

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stream.close()


@dataclass
class _Part:
    """One open Parquet file and the rows waiting to fill its next row group."""

    relative: str
    sink: _HashingSink
    writer: pq.ParquetWriter
    pending: list[pa.RecordBatch] = field(default_factory=list)
    pending_rows: int = 0

    def add(self, batch: pa.RecordBatch, schema: pa.Schema) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            gathered = pa.Table.from_batches(self.pending, schema)
            full = self.pending_rows - self.pending_rows % ROW_GROUP_ROWS
            self.writer.write_table(gathered.slice(0, full), row_group_size=ROW_GROUP_ROWS)
            self.pending, self.pending_rows = gathered.slice(full).to_batches(), self.pending_rows - full

    def finish(self, schema: pa.Schema) -> None:
        if self.pending_rows:
            self.writer.write_table(pa.Table.from_batches(self.pending, schema), row_group_size=ROW_GROUP_ROWS)
        self.pending, self.pending_rows = [], 0
        self.writer.close()
        self.sink.close()


@dataclass(frozen=True, slots=True)
class WrittenParts:
    """What :func:`write_parts` wrote: files relative to its folder (sorted), rows, xxh3-128 hex of the content."""

    files: tuple[str, ...]
    rows: int
    content_hash: str


def check_partitioning(schema: pa.Schema, partition_by: Sequence[str], *, label: str) -> None:
    """Raise a one-line TerminalError when a partition column is missing or of a type a folder name cannot hold."""
    for column in partition_by:
        index = schema.get_field_index(column)
        if index < 0:
            raise TerminalError(
                f"{label}: partition_by column {column!r} is not in the output (columns: {', '.join(schema.names)}); "
                "name one of its columns"
            )
        kind = schema.field(index).type
        if not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_date(kind)
        ):
            raise TerminalError(
                f"{label}: partition_by column {column!r} has type {kind}; partition by a string, integer or date column"
            )
    if len(set(partition_by)) != len(partition_by) or (partition_by and len(partition_by) == len(schema)):
        raise TerminalError(
            f"{label}: partition_by {list(partition_by)} must name distinct columns and leave one column in the files"
        )


def write_parts(
    fs: pafs.FileSystem, folder: str, data: pa.RecordBatchReader, partition_by: Sequence[str] = (), *, label: str
) -> WrittenParts:
    """Stream ``data`` into Parquet files under ``folder`` (a path on ``fs``, created when needed).

    Memory stays bounded by one pending row group per open partition (at most MAX_OPEN_PARTITIONS).
    Raises TerminalError for a bad ``partition_by``; errors of ``data`` and of ``fs`` propagate (the
    caller removes the folder). An empty stream writes one empty file with the schema.
    """
    schema = data.schema
    check_partitioning(schema, partition_by, label=label)
    file_schema = pa.schema([f for f in schema if f.name not in partition_by], metadata=schema.metadata)
    parts: dict[str, _Part] = {}  # by folder: values that name the same folder ('' and NULL) share one part
    rows = 0
    fs.create_dir(folder, recursive=True)

    def part_for(values: tuple[Any, ...]) -> _Part:
        prefix = "".join(f"{column}={_segment(value)}/" for column, value in zip(partition_by, values, strict=True))
        part = parts.get(prefix)
        if part is None:
            if len(parts) >= MAX_OPEN_PARTITIONS:
                raise TerminalError(
                    f"{label}: more than {MAX_OPEN_PARTITIONS} partitions of {list(partition_by)} in one write; "
                    "partition by a coarser column (a day rather than a timestamp)"
                )
            relative = f"{prefix}{PART}"
            if prefix:
                fs.create_dir(f"{folder}/{prefix.rstrip('/')}", recursive=True)
            sink = _HashingSink(fs.open_output_stream(f"{folder}/{relative}"))
            writer = pq.ParquetWriter(sink, file_schema, **WRITER_OPTIONS)
            part = parts[prefix] = _Part(relative, sink, writer)
        return part

    try:
        for batch in data:
            rows += batch.num_rows
            if not partition_by:
                part_for(()).add(batch, file_schema)
                continue
            for values, piece in _split(batch, partition_by):
                part_for(values).add(piece.select(file_schema.names), file_schema)
        if not parts:
            part_for(tuple(None for _ in partition_by) if partition_by else ())
        digest = xxhash.xxh3_128()
        for part in sorted(parts.values(), key=lambda p: p.relative):
            part.finish(file_schema)
            digest.update(_digest_line(part.relative, part.sink.size, part.sink.digest.hexdigest()))
    finally:
        for part in parts.values():
            if not part.sink.closed:  # on an error: stop the upload; the caller deletes the folder
                part.sink.close()
                part.writer.is_open = False  # its footer would go nowhere; keep __del__ from writing it
    return WrittenParts(tuple(sorted(part.relative for part in parts.values())), rows, digest.hexdigest())


def _digest_line(relative: str, size: int, part_hash: str) -> bytes:
    return f"{relative}\0{size}\0{part_hash}\n".encode()


def part_digest(relative: str, size: int, part_hash: str) -> str:
    """The content hash :func:`write_parts` gives a version of one part ``relative`` of ``size`` bytes whose own
    xxh3-128 hex is ``part_hash`` (for a part written another way: a copied file)."""
    return xxhash.xxh3_128(_digest_line(relative, size, part_hash)).hexdigest()


def _split(batch: pa.RecordBatch, columns: Sequence[str]) -> list[tuple[tuple[Any, ...], pa.RecordBatch]]:
    """``batch`` cut by the values of ``columns``: (values, rows having them), rows in their order."""
    keys = pa.Table.from_batches([batch.select(list(columns))]).group_by(list(columns), use_threads=False).aggregate([])
    if keys.num_rows == 1:
        return [(tuple(keys.column(c)[0].as_py() for c in columns), batch)]
    pieces = []
    for row in range(keys.num_rows):
        values = tuple(keys.column(c)[row].as_py() for c in columns)
        mask = None
        for column, value in zip(columns, values, strict=True):
            array = batch.column(column)
            test = pc.is_null(array) if value is None else pc.fill_null(pc.equal(array, value), False)
            mask = test if mask is None else pc.and_(mask, test)
        pieces.append((values, batch.filter(mask)))
    return pieces


def _segment(value: Any) -> str:
    """A partition value as a folder-name segment (URI-encoded, as pyarrow's hive partitioning decodes it).

    NULL and the empty string both name Hive's default partition (``__HIVE_DEFAULT_PARTITION__``), as in Hive
    and Spark: their rows share one file, and an empty string reads back as NULL."""
    if value is None:
        return NULL_PARTITION
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return quote(text, safe="") if text else NULL_PARTITION
