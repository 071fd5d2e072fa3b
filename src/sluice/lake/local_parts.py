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
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TerminalError
from sluice.lake.base import LakeWrite, StagedOutput, Then

BATCH_ROWS = 128 * 1024
CHUNK = 1 << 20
PARTS_GRACE_S = 60.0
LOGICAL_DATE_FILE = "_logical_date"
"""In a parts folder made by :func:`link_files`: the logical date its data is of (not a part: no ``.parquet``)."""
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
        swap_in(self.target, self.folder, self.token)
        return LakeWrite(location=self.location, rows=rows, content_hash=content_hash, published=published)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def swap_in(target: Path, folder: Path, token: str) -> None:
    """Rename the complete staging ``folder`` to ``.<target>.parts-<token>`` and swap ``target``'s link to it in one
    ``rename`` (see the module); older parts folders of ``target`` go once unused. Raises TerminalError when
    ``target`` is a real folder, and what the file system raises (the staged parts removed)."""
    final = target.parent / f".{target.name}.parts-{token}"
    previous = os.readlink(target) if target.is_symlink() else None
    if target.is_dir() and not target.is_symlink():
        raise TerminalError(f"lake output {target} is a folder Sluice did not write; move it away")
    os.rename(folder, final)
    os.utime(final)
    link = target.parent / f".{target.name}.{token}.link.tmp"
    try:
        os.symlink(final.name, link)
        os.replace(link, target)
    except BaseException:
        link.unlink(missing_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        raise
    fsync_folder(target.parent)
    remove_old_parts(target, keep={final.name, previous or ""})


def link_files(target: Path, files: Mapping[str, Path], logical_date: str | None) -> None:
    """Make ``target`` a link to a new parts folder holding **hard links** to ``files`` (part name: another output's Parquet
    file, or its parts: immutable once committed, as every write of the lake renames a new file in), plus the
    file ``_logical_date`` holding ``logical_date`` when given; swapped in like an engine's parts
    (:func:`swap_in`). No data is copied, and a later write or removal of the other output leaves ``target`` as
    it is. A file system without hard links (or ``files`` on another one) gets a copy. Raises what the file
    system raises, the staged folder removed."""
    token = secrets.token_hex(8)
    staging = target.parent / f".{target.name}.{token}.tmp"
    staging.mkdir()
    try:
        for name, file in files.items():
            linked = staging / name
            try:
                os.link(file, linked)
            except OSError:  # no hard links here (EPERM, EXDEV...): a copy keeps the output right
                shutil.copyfile(file, linked)
        if logical_date:
            (staging / LOGICAL_DATE_FILE).write_text(logical_date, encoding="utf-8")
        swap_in(target, staging, token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def linked_date(target: Path) -> str | None:
    """The ``logical_date`` a :func:`link_files` parts folder was marked with; None for any other output."""
    if not target.is_symlink():
        return None
    try:
        return (target.resolve() / LOGICAL_DATE_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


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
