"""The lake in a local folder: ``<root>/<layer>/<name>.parquet``, zstd-compressed, replaced atomically.

A partitioned output (``partition_by``) is a folder ``<root>/<layer>/<name>/`` of versions committed by a
manifest, exactly as on S3 (:mod:`sluice.lake.versioned`), the manifest itself replaced by a rename.

A write streams into a hidden temporary file beside the target and renames it over the target only once
the file is complete and flushed, so readers see the old output or the new one, never half a file, and a
crash leaves at most a hidden ``.*.tmp`` file behind (cleared by a later write of the same output).

>>> import pyarrow as pa, tempfile
>>> lake = LocalLake(Path(tempfile.mkdtemp()))
>>> table = pa.table({"id": [1, 2]})
>>> lake.write("raw", "users", pa.RecordBatchReader.from_batches(table.schema, table.to_batches())).rows
2
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sluice.errors import TerminalError
from sluice.lake.base import Lake, LakeWrite, Then
from sluice.lake.versioned import MANIFEST, Retention, VersionedStore

if TYPE_CHECKING:
    import pyarrow.dataset as ds

CHUNK = 1 << 20
ROW_GROUP_ROWS = 128 * 1024
STALE_AFTER_S = 3600.0
FILE_MODE = 0o644
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- =]*$")


class LocalLake(Lake):
    """A lake in a folder. Locations look like ``raw/users.parquet`` and stay inside ``root``."""

    def __init__(self, root: Path, retention: Retention | None = None) -> None:
        self.root = Path(root).resolve()
        self.store = VersionedStore(pafs.LocalFileSystem(), _commit_file, retention or Retention())

    def write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        then: Then | None = None,
        partition_by: Sequence[str] = (),
    ) -> LakeWrite:
        """Stream ``data`` into ``<layer>/<name>.parquet``, replacing any previous output atomically.

        The data goes to a hidden temporary file first; ``then`` (if given) reads that file before it is
        renamed over the target, so a ``then`` that fails leaves the previous output in place. With
        ``partition_by`` the output is the manifest-committed folder ``<layer>/<name>`` instead.
        """
        if partition_by:
            location = f"{_segment(layer, 'layer')}/{_segment(name, 'name')}"
            folder = self._path(location)
            folder.mkdir(parents=True, exist_ok=True)
            return self.store.write(folder.as_posix(), location, data, partition_by=partition_by, then=then)
        location = f"{_segment(layer, 'layer')}/{_segment(name, 'name')}.parquet"
        target = self._path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(target, self.store.retention.orphan_grace_s)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(handle)
        os.chmod(temporary, FILE_MODE)  # mkstemp makes the file private; outputs are shared like any file
        try:
            rows = _write_parquet(Path(temporary), data)
            _fsync(temporary)
            content_hash = _hash(Path(temporary))
            published = then(_read_file(Path(temporary))) if then is not None else None
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)
        return LakeWrite(location=location, rows=rows, content_hash=content_hash, published=published)

    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream a stored output back, one row group at a time."""
        path = self._existing(location)
        manifest = self.store.manifest(path.as_posix()) if path.is_dir() else None
        return _read_file(path) if manifest is None else self.store.reader(path.as_posix(), manifest)

    def exists(self, location: str) -> bool:
        path = self._path(location)
        return path.is_file() or (path / MANIFEST).is_file()

    def current_location(self, layer: str, name: str) -> str | None:
        """``<layer>/<name>.parquet`` (a plain output) or ``<layer>/<name>`` (a partitioned one), or None."""
        for location in (f"{layer}/{name}.parquet", f"{layer}/{name}"):
            if self.exists(location):
                return location
        return None

    def parquet_path(self, location: str) -> str:
        """The absolute path of ``location`` (for DuckDB's ``read_parquet``); a glob over the current
        version's files for a partitioned output (whose partition columns DuckDB sees only through
        :meth:`duckdb_input`)."""
        path = self._path(location)
        manifest = self.store.manifest(path.as_posix()) if path.is_dir() else None
        return str(path) if manifest is None else f"{path}/v={manifest.version}/**/*.parquet"

    def duckdb_input(self, location: str) -> str | ds.Dataset:
        """The file's path, or for a partitioned output a pyarrow dataset with its partition columns typed."""
        path = self._existing(location)
        manifest = self.store.manifest(path.as_posix()) if path.is_dir() else None
        return str(path) if manifest is None else self.store.dataset(path.as_posix(), manifest)

    def versions(self, location: str) -> list[str]:
        """``["current"]`` for a file output; the version folders of a partitioned one, oldest first."""
        path = self._path(location)
        if path.is_dir():
            return self.store.versions(path.as_posix())
        return ["current"] if path.is_file() else []

    def _path(self, location: str) -> Path:
        """The file for ``location``; a location that would leave the lake folder is refused."""
        parts = PurePosixPath(location.replace("\\", "/")).parts
        if not parts or location.startswith(("/", "\\")) or any(part in ("..", ".", "") for part in parts) or ":" in parts[0]:
            raise TerminalError(f"lake location {location!r} is not inside the lake; use '<layer>/<name>.parquet'")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root):
            raise TerminalError(f"lake location {location!r} leads outside the lake folder {self.root}")
        return path

    def _existing(self, location: str) -> Path:
        path = self._path(location)
        if not path.is_file() and not (path / MANIFEST).is_file():
            raise TerminalError(
                f"lake location {location!r} holds no output ({path} does not exist); run the object that writes it first"
            )
        return path


def _commit_file(path: str, content: bytes) -> None:
    """Replace ``path`` with ``content`` atomically: a temporary file beside it, flushed, then renamed."""
    handle, temporary = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(Path(path).parent)


def _read_file(path: Path) -> pa.RecordBatchReader:
    parquet = pq.ParquetFile(path)
    batches = parquet.iter_batches(batch_size=ROW_GROUP_ROWS)
    return pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches)


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.match(value) or ".." in value:
        raise TerminalError(f"lake {what} {value!r} cannot be used as a file name; use letters, digits, '_', '-', '.' or spaces")
    return value


def _write_parquet(path: Path, data: pa.RecordBatchReader) -> int:
    """Write every batch, gathering small batches into row groups of about ROW_GROUP_ROWS rows."""
    rows, pending, pending_rows = 0, list[pa.RecordBatch](), 0
    with pq.ParquetWriter(path, data.schema, compression="zstd") as writer:
        for batch in data:
            pending.append(batch)
            pending_rows += batch.num_rows
            rows += batch.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                gathered = pa.Table.from_batches(pending, data.schema)
                full = pending_rows - pending_rows % ROW_GROUP_ROWS
                writer.write_table(gathered.slice(0, full), row_group_size=ROW_GROUP_ROWS)
                pending, pending_rows = gathered.slice(full).to_batches(), pending_rows - full
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, data.schema), row_group_size=ROW_GROUP_ROWS)
    return rows


def _hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
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


def _remove_stale_temporaries(target: Path, grace_s: float = STALE_AFTER_S) -> None:
    """Remove temporary files an interrupted write of this output left behind.

    Only files untouched for ``grace_s`` (Retention.orphan_grace_s, STALE_AFTER_S by default) go: a
    concurrent writer of the same output (a redelivered
    object) keeps its file fresh while it writes, and must not lose it.
    """
    now = time.time()
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > grace_s:
                stale.unlink()
        except OSError:
            pass
