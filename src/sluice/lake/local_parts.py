"""Outputs of the local lake written as a folder of Parquet parts by an engine (Spark), committed atomically.

Layout, for the output ``raw/users.parquet``:

- the engine writes into a staging folder ``raw/.users.parquet.<token>.tmp/`` that no reader looks at;
- on commit the folder is renamed ``raw/.users.parquet.parts-<token>/`` and ``raw/users.parquet`` becomes a
  relative symbolic link to it, swapped in with one ``rename`` (readers resolve the link once, so they see
  the old parts or the new ones, never a mix);
- the parts folder the link pointed to before is kept for readers still in flight; older ones go on the
  next write of the same output (once untouched for ``PARTS_GRACE_S`` seconds).

Only ``*.parquet`` files of a folder are parts (Spark's ``_SUCCESS`` and ``.crc`` files are ignored), read in
name order (``part-00000-…``, ``part-00001-…``: Spark's partition order).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TerminalError
from sluice.lake.base import LakeWrite, StagedOutput, Then

BATCH_ROWS = 128 * 1024
CHUNK = 1 << 20
PARTS_GRACE_S = 60.0
STALE_AFTER_S = 3600.0


def parts(folder: Path) -> list[Path]:
    """The Parquet parts of ``folder`` in name order (``*.parquet``; hidden files and markers left out)."""
    return sorted(p for p in folder.glob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))


def read_parts(folder: Path) -> pa.RecordBatchReader:
    """Stream every part of ``folder`` in order, ``BATCH_ROWS`` rows at most per batch, with the first part's schema.

    Raises TerminalError when the folder holds no part.
    """
    files = parts(folder)
    if not files:
        raise TerminalError(f"lake output {folder} holds no Parquet parts (*.parquet)")
    schema = pq.ParquetFile(files[0]).schema_arrow

    def batches() -> Iterator[pa.RecordBatch]:
        for file in files:
            parquet = pq.ParquetFile(file)
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                yield batch if batch.schema == schema else batch.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def summary(folder: Path) -> tuple[int, str]:
    """``(rows, content hash)`` of a parts folder: rows from the Parquet footers; xxh3_128 over the parts' bytes in order.

    The local lake can afford hashing the content (about 20 GB/s from the page cache, just written); a remote
    lake may hash the footers instead. Raises TerminalError when the folder holds no part.
    """
    files = parts(folder)
    if not files:
        raise TerminalError(f"the engine wrote no Parquet parts (*.parquet) into {folder}")
    rows = 0
    digest = xxhash.xxh3_128()
    for file in files:
        rows += pq.read_metadata(file).num_rows
        with file.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return rows, digest.hexdigest()


class LocalStagedOutput(StagedOutput):
    """A staging folder beside ``target`` (``<layer>/.<name>.parquet.<token>.tmp/``); see the module's layout."""

    def __init__(self, target: Path, location: str, grace_s: float = STALE_AFTER_S) -> None:
        self.target = target
        self.location = location
        self.token = secrets.token_hex(8)
        self.folder = target.parent / f".{target.name}.{self.token}.tmp"
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target, grace_s)
        self.uri = self.folder.as_uri()

    def read(self) -> pa.RecordBatchReader:
        return read_parts(self.folder)

    def commit(self, *, then: Then | None = None) -> LakeWrite:
        """Rename the staging folder to a parts folder and swap ``target``'s link to it (see the module)."""
        rows, content_hash = summary(self.folder)
        published = then(read_parts(self.folder)) if then is not None else None
        final = self.target.parent / f".{self.target.name}.parts-{self.token}"
        previous = os.readlink(self.target) if self.target.is_symlink() else None
        if self.target.is_dir() and not self.target.is_symlink():
            raise TerminalError(f"lake output {self.target} is a folder Sluice did not write; move it away")
        os.rename(self.folder, final)
        os.utime(final)
        link = self.target.parent / f".{self.target.name}.{self.token}.link.tmp"
        try:
            os.symlink(final.name, link)
            os.replace(link, self.target)
        except BaseException:
            link.unlink(missing_ok=True)
            shutil.rmtree(final, ignore_errors=True)
            raise
        fsync_folder(self.target.parent)
        remove_old_parts(self.target, keep={final.name, previous or ""})
        return LakeWrite(location=self.location, rows=rows, content_hash=content_hash, published=published)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_old_parts(target: Path, keep: set[str]) -> None:
    """Remove parts folders of ``target`` other than ``keep`` (names) and untouched for ``PARTS_GRACE_S`` seconds."""
    now = time.time()
    for folder in target.parent.glob(f".{target.name}.parts-*"):
        try:
            if folder.name not in keep and now - folder.stat().st_mtime > PARTS_GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def remove_stale(target: Path, grace_s: float = STALE_AFTER_S) -> None:
    """Remove temporary files and staging folders an interrupted write of ``target`` left behind.

    Only those untouched for ``grace_s`` (the lake's Retention.orphan_grace_s, STALE_AFTER_S by default) go:
    a concurrent writer of the same output (a redelivered object) keeps its own fresh while it writes, and
    must not lose it.
    """
    now = time.time()
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > grace_s:
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink()
        except OSError:
            pass


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; ignored where the file system cannot."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync folders; the rename itself is still atomic
    finally:
        os.close(descriptor)
