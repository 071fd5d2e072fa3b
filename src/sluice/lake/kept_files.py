"""A source's own Parquet file kept as the lake output, instead of its batches encoded again.

An object that reads one local Parquet file and stores it unchanged (no SQL, no date parts, no
``partition_by``, every column in the file's order) would otherwise decode the file, then encode the same
rows again with zstd for the lake: on issue 12's bench most of the object's CPU. When the file would read
back the same as the lake's own encoding of its batches (:func:`keeps_as_encoded`), the lake copies the
file's bytes instead (hashing them on the way), while the destination still loads the decoded batches
(:func:`copy_while_draining`). The lake output then holds the source's row groups, compression and
encodings; readers see the same Arrow schema, Parquet column types and values either way.

The copy is a real copy, never a hard link: a source file rewritten in place would change a linked lake
file behind the manifest and the content hash (ext4, where this was measured, has no reflink either).
The file is checked to be the one the source opened (device, inode, size, modification time) before and
after the copy; a file replaced or rewritten meanwhile makes the write fail as transient (retried, the
old output stays), or, when seen before anything was copied, the batches are encoded as usual.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TransientError
from sluice.lake.parts import WRITER_OPTIONS

COPY_CHUNK = 8 << 20  # bytes read, hashed (and uploaded) at a time
MAX_ROW_GROUP_BYTES = 256 << 20
"""A file with a larger row group (uncompressed bytes, from its footer) is encoded again in the lake's row groups of
131,072 rows: a reader holds a row group's column chunks in memory, and the lake keeps that bounded."""


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A local Parquet file whose whole content a source streams: every row and column, in the file's order,
    with the file's own Arrow schema (``pq.ParquetFile(path).schema_arrow``).

    ``identity``: device, inode, size (bytes) and modification time (ns) when the source opened it.
    """

    path: Path
    identity: tuple[int, int, int, int]

    @classmethod
    def opened(cls, path: Path) -> SourceFile:
        """The file at ``path`` as it is now (call it just before opening the file to read it). Raises OSError."""
        return cls(Path(path), _identity(os.stat(path)))

    def unchanged(self, fd: int | None = None) -> bool:
        """True while the path (or the open ``fd``) is still the file the source opened."""
        try:
            return _identity(os.fstat(fd) if fd is not None else os.stat(self.path)) == self.identity
        except OSError:
            return False


def keeps_as_encoded(file: SourceFile, schema: pa.Schema) -> bool:
    """True when ``file``, streamed as ``schema``, reads back exactly as the lake's own encoding of its batches would.

    The lake writes ``schema`` with :data:`~sluice.lake.parts.WRITER_OPTIONS`; an empty file written that way must
    have the same Parquet schema (column names, physical and logical types, repetition: what DuckDB or Spark see)
    and the same Arrow schema, metadata included (what pyarrow sees), as ``file``, and ``schema`` must be ``file``'s
    Arrow schema. A file from another writer whose types pyarrow would store differently (INT96 timestamps,
    DuckDB's decimals stored as integers, intervals...) is then encoded as before. False too when a row group of the file
    holds more than :data:`MAX_ROW_GROUP_BYTES`, when the file cannot be read or is no longer the one the source opened.
    """
    try:
        with pq.ParquetFile(file.path) as source:
            return _same_as_encoded(file, source, schema)
    except (OSError, pa.ArrowException):
        return False


def _same_as_encoded(file: SourceFile, source: pq.ParquetFile, schema: pa.Schema) -> bool:
    probe = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), probe, **WRITER_OPTIONS)
    encoded = pq.ParquetFile(pa.BufferReader(probe.getvalue()))
    groups = source.metadata
    largest = max((groups.row_group(i).total_byte_size for i in range(groups.num_row_groups)), default=0)
    return (
        largest <= MAX_ROW_GROUP_BYTES
        and file.unchanged()
        and schema.equals(source.schema_arrow, check_metadata=True)
        and encoded.schema_arrow.equals(source.schema_arrow, check_metadata=True)
        and _columns(encoded.schema) == _columns(source.schema)
    )


_PLAIN_INTEGERS = {("INT32", "Int(bitWidth=32, isSigned=true)"), ("INT64", "Int(bitWidth=64, isSigned=true)")}


def _columns(schema: pq.ParquetSchema) -> list[tuple[Any, ...]]:
    """What a reader of each leaf column sees: path, physical type, logical type, levels (nesting, nullability)
    and fixed width (a decimal's precision and scale are in its logical type). A signed 32/64-bit integer
    annotation is the same as none (DuckDB writes one, Arrow does not); no reader reads the root group's name."""
    found = []
    for index in range(len(schema)):
        column = schema.column(index)
        logical = str(column.logical_type)
        if (column.physical_type, logical) in _PLAIN_INTEGERS:
            logical = "None"
        width = column.length if column.physical_type == "FIXED_LEN_BYTE_ARRAY" else 0
        found.append(
            (column.path, column.physical_type, logical, column.max_definition_level, column.max_repetition_level, width)
        )
    return found


def copy_while_draining(
    file: SourceFile, batches: pa.RecordBatchReader, *, write: Callable[[bytes], Any] | None = None, out_fd: int = -1
) -> tuple[int, int, str]:
    """Copy ``file``'s bytes in a helper thread while this thread reads ``batches`` to their end (feeding the
    destination's load); return ``(rows, bytes copied, xxh3-128 hex of the bytes)``.

    The bytes go to ``out_fd`` (a local file open for writing: copied inside the kernel by ``copy_file_range``,
    which a file system with reflinks turns into a shared-extent clone, then hashed from the page cache), or through
    ``write`` (an upload stream: read, hashed and written in 8 MiB chunks). Raises what ``batches`` or the writing
    raise, and TransientError when the file changed during the copy (it is no longer the file the source read) or
    its rows differ from the batches' (the caller removes what was copied).
    """
    copied: list[tuple[int, str]] = []
    failed: list[BaseException] = []

    def copy() -> None:
        try:
            try:
                handle = open(file.path, "rb")  # noqa: SIM115 (closed by the with below)
            except OSError as exc:
                raise _changed(file) from exc
            with handle:
                if not file.unchanged(handle.fileno()):
                    raise _changed(file)
                if write is None:
                    _kernel_copy(handle.fileno(), out_fd, file.identity[2])
                    handle.seek(0)
                size, digest = _read_through(handle, write)
                if not file.unchanged(handle.fileno()) or size != file.identity[2]:
                    raise _changed(file)
            copied.append((size, digest))
        except BaseException as exc:  # handed to the calling thread
            failed.append(exc)

    worker = threading.Thread(target=copy, name="sluice-lake-copy", daemon=True)
    worker.start()
    try:
        rows = sum(batch.num_rows for batch in batches)
    finally:
        worker.join()
    if failed:
        raise failed[0]
    if rows != pq.read_metadata(file.path).num_rows:
        raise _changed(file)
    return rows, *copied[0]


def _kernel_copy(source: int, target: int, size: int) -> None:
    """``size`` bytes of ``source`` into ``target`` with ``copy_file_range`` (no trip through user space); a plain
    read-write loop where the kernel or file system refuses it."""
    done = 0
    try:
        while done < size:
            count = os.copy_file_range(source, target, size - done)
            if count == 0:
                break
            done += count
    except OSError:  # EXDEV, ENOSYS, EINVAL...: copy what is left by hand
        os.lseek(source, done, os.SEEK_SET)
        os.lseek(target, done, os.SEEK_SET)
        buffer = bytearray(COPY_CHUNK)
        with open(source, "rb", closefd=False) as reader:
            while count := reader.readinto(buffer):
                os.write(target, memoryview(buffer)[:count])


def _read_through(handle: Any, write: Callable[[bytes], Any] | None) -> tuple[int, str]:
    """Read ``handle`` to its end in 8 MiB chunks, hashing them (xxh3-128) and passing them to ``write`` if given.

    Each chunk given to ``write`` is a new ``bytes``: an S3 stream may upload a large chunk in the background
    without copying it, so a reused buffer could change under the upload."""
    digest = xxhash.xxh3_128()
    size = 0
    if write is None:
        buffer = bytearray(COPY_CHUNK)
        while count := handle.readinto(buffer):
            digest.update(memoryview(buffer)[:count])
            size += count
        return size, digest.hexdigest()
    while chunk := handle.read(COPY_CHUNK):
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _changed(file: SourceFile) -> TransientError:
    return TransientError(f"parquet source {file.path} changed while it was read; the object is retried")
