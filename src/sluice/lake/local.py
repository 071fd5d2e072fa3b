"""The lake in a local folder: ``<root>/<layer>/<name>.parquet``, zstd-compressed, replaced atomically.

A partitioned output (``partition_by``) is a folder ``<root>/<layer>/<name>/`` of versions committed by a
manifest, exactly as on S3 (:mod:`sluice.lake.versioned`), the manifest itself replaced by a rename.

A write streams into a hidden temporary file beside the target and renames it over the target only once
the file is complete and flushed, so readers see the old output or the new one, never half a file, and a
crash leaves at most a hidden ``.*.tmp`` file behind (cleared by a later write of the same output).
An engine that writes Parquet itself (Spark) writes a folder of parts through :meth:`LocalLake.stage`;
the plain output ``<layer>/<name>.parquet`` is then a link to that folder (:mod:`sluice.lake.local_parts`),
read the same way.

So a location holds one of three things: a Parquet file or a link to a parts folder (``<name>.parquet``,
a plain output), or a manifest-committed folder (``<name>``, a partitioned output); every method reading
the lake tells them apart.

>>> import pyarrow as pa, tempfile
>>> lake = LocalLake(Path(tempfile.mkdtemp()))
>>> table = pa.table({"id": [1, 2]})
>>> lake.write("raw", "users", pa.RecordBatchReader.from_batches(table.schema, table.to_batches())).rows
2
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TerminalError
from sluice.lake import appends
from sluice.lake.base import Compacted, Lake, LakeWrite, StagedAppend, StagedOutput, StoredOutput, Then, keep_then
from sluice.lake.kept_files import SourceFile, copy_while_draining, keeps_as_encoded
from sluice.lake.local_parts import (
    STALE_AFTER_S,
    LocalStagedOutput,
    fsync_folder,
    link_files,
    linked_date,
    parts,
    read_parts,
    remove_old_parts,
    remove_stale,
)
from sluice.lake.parts import WRITER_OPTIONS
from sluice.lake.versioned import MANIFEST, Manifest, Retention, VersionedStore

if TYPE_CHECKING:
    import pyarrow.dataset as ds

__all__ = ["ROW_GROUP_ROWS", "STALE_AFTER_S", "LocalLake"]

CHUNK = 1 << 20
ROW_GROUP_ROWS = 128 * 1024
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

        The data goes to a hidden temporary file first; ``then`` (if given) loads the same batches meanwhile
        (:func:`keep_then`) and the file is renamed over the target only once both are done, so a ``then``
        that fails leaves the previous output in place. With
        ``partition_by`` the output is the manifest-committed folder ``<layer>/<name>`` instead.
        """
        if partition_by:
            location = f"{_segment(layer, 'layer')}/{_segment(name, 'name')}"
            folder = self._path(location)
            folder.mkdir(parents=True, exist_ok=True)
            return self.store.write(folder.as_posix(), location, data, partition_by=partition_by, then=then)

        def keep(temporary: Path, batches: pa.RecordBatchReader) -> tuple[int, str]:
            rows = _write_parquet(temporary, batches)
            _fsync(temporary)
            return rows, _hash(temporary)

        return self._replace(_location(layer, name), data, keep, then)

    def write_file(
        self, layer: str, name: str, file: SourceFile, data: pa.RecordBatchReader, *, then: Then | None = None
    ) -> LakeWrite:
        """:meth:`Lake.write` of ``data``, keeping a copy of ``file`` as ``<layer>/<name>.parquet`` (its bytes hashed
        as :meth:`write` hashes the file it encodes: the same bytes give the same content hash) when it reads back the
        same as the encoded batches would (:mod:`sluice.lake.kept_files`); ``then`` loads ``data`` meanwhile."""
        if not keeps_as_encoded(file, data.schema):
            return self.write(layer, name, data, then=then)

        def keep(temporary: Path, batches: pa.RecordBatchReader) -> tuple[int, str]:
            with temporary.open("wb") as out:
                rows, _, content_hash = copy_while_draining(file, batches, out_fd=out.fileno())
                os.fsync(out.fileno())
            return rows, content_hash

        return self._replace(_location(layer, name), data, keep, then)

    def _replace(
        self,
        location: str,
        data: pa.RecordBatchReader,
        keep: Callable[[Path, pa.RecordBatchReader], tuple[int, str]],
        then: Then | None,
    ) -> LakeWrite:
        """``keep`` fills a hidden temporary file beside ``location``'s (flushed, returning rows and content hash)
        while ``then`` loads ``data`` (:func:`keep_then`); the file then replaces the target, or is removed on an error."""
        target = self._path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target, self.store.retention.orphan_grace_s)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(handle)
        os.chmod(temporary, FILE_MODE)  # mkstemp makes the file private; outputs are shared like any file
        try:
            (rows, content_hash), published = keep_then(data, functools.partial(keep, Path(temporary)), then)
            previous = os.readlink(target) if target.is_symlink() else ""
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        fsync_folder(target.parent)
        if previous:  # the output was a parts folder (Spark): keep it for readers in flight, drop older ones
            remove_old_parts(target, keep={previous})
        return LakeWrite(location=location, rows=rows, content_hash=content_hash, published=published)

    def stage(self, layer: str, name: str) -> StagedOutput:
        """A hidden staging folder for ``<layer>/<name>.parquet`` (``file:///…/.<name>.parquet.<token>.tmp``);
        committing it makes the output a link to its parts (:mod:`sluice.lake.local_parts`)."""
        location = _location(layer, name)
        return LocalStagedOutput(self._path(location), location, self.store.retention.orphan_grace_s)

    def append(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        commit: Mapping[str, Any],
        token: str | None = None,
        state: bytes | None = None,
    ) -> LakeWrite:
        """Add a micro-batch to the append-only folder ``<layer>/<name>`` (see :meth:`Lake.append`)."""
        location, folder = self._append_folder(layer, name)
        folder.mkdir(parents=True, exist_ok=True)
        return appends.append(self.store, folder.as_posix(), location, data, commit=commit, token=token, state=state)

    def compact(self, layer: str, name: str, *, target_bytes: int, min_files: int) -> Compacted:
        """See :meth:`Lake.compact`."""
        location, folder = self._append_folder(layer, name)
        return appends.compact(self.store, folder.as_posix(), location, target_bytes=target_bytes, min_files=min_files)

    def last_commit(self, layer: str, name: str) -> dict[str, Any] | None:
        return appends.last_commit(self.store, self._append_folder(layer, name)[1].as_posix())

    def last_state(self, layer: str, name: str) -> bytes | None:
        return appends.last_state(self.store, self._append_folder(layer, name)[1].as_posix())

    def appended(self, layer: str, name: str) -> LakeWrite | None:
        location, folder = self._append_folder(layer, name)
        return appends.summary(self.store, folder.as_posix(), location)

    def stage_append(self, layer: str, name: str) -> StagedAppend:
        """A batch folder ``file:///…/<layer>/<name>/v=<version>`` (see :meth:`Lake.stage_append`)."""
        location, folder = self._append_folder(layer, name)
        return appends.VersionStaged(self.store, folder.as_posix(), location, folder.as_uri())

    def parquet_files(self, location: str) -> list[str]:
        path = self._existing(location)
        manifest = self._manifest(path)
        if manifest is not None:
            return [f"{self.store.data_folder(path.as_posix(), manifest)}/{name}" for name in manifest.files]
        return [str(part) for part in sorted(path.resolve().glob("*.parquet"))] if path.is_dir() else [str(path)]

    def promote(
        self, layer: str, name: str, location: str, logical_date: str | None = None, partition_by: Sequence[str] = ()
    ) -> None:
        """:meth:`Lake.promote` without copying: ``<layer>/<name>.parquet`` becomes a link to a parts folder of hard
        links to ``location``'s file or parts (:func:`~sluice.lake.local_parts.link_files`); a partitioned output's
        manifest links to ``location``'s version (:meth:`VersionedStore.link`)."""
        source = self._existing(location)
        manifest = self._manifest(source)
        if manifest is not None:
            plain = f"{_segment(layer, 'layer')}/{_segment(name, 'name')}"
            folder = self._path(plain)
            folder.mkdir(parents=True, exist_ok=True)
            self.store.link(folder.as_posix(), plain, source.as_posix(), logical_date)
            return
        target = self._path(_location(layer, name))
        resolved = source.resolve()
        files = {part.name: part for part in parts(resolved)} if resolved.is_dir() else {"part-00000.parquet": resolved}
        link_files(target, files, logical_date)

    def promoted_date(self, layer: str, name: str) -> str | None:
        """The date marking a linked output (its parts folder's, or its manifest's); an output copied by an older
        release holds it in its schema metadata (:meth:`Lake.promoted_date`)."""
        target = self._path(_location(layer, name))
        if target.is_symlink():
            return linked_date(target)
        folder = self._path(f"{layer}/{name}")
        manifest = None if target.exists() else self._manifest(folder)
        if manifest is not None:
            return manifest.logical_date
        return super().promoted_date(layer, name)

    def outputs(self, layer: str, prefix: str) -> list[StoredOutput]:
        """Outputs ``<layer>/<prefix>*.parquet`` (a file or a link: when it was renamed in) and ``<layer>/<prefix>*/``
        (a partitioned one: when its manifest was)."""
        folder = self._path(_segment(layer, "layer"))
        found: list[StoredOutput] = []
        for path in sorted(folder.glob(f"{glob.escape(prefix)}*")) if folder.is_dir() else []:
            if path.name.startswith(".") or not _holds_output(path):
                continue
            stored = path.name.removesuffix(".parquet") if path.is_file() or path.is_symlink() else path.name
            committed = path if path.is_file() or path.is_symlink() else path / MANIFEST
            found.append(StoredOutput(stored, f"{layer}/{path.name}", committed.lstat().st_mtime))
        return found

    def remove(self, layer: str, name: str) -> None:
        """Delete ``<layer>/<name>.parquet`` (with the parts folders it links to) or the folder ``<layer>/<name>``."""
        target = self._path(_location(layer, name))
        target.unlink(missing_ok=True)
        for parts_folder in target.parent.glob(f".{glob.escape(target.name)}.parts-*"):
            shutil.rmtree(parts_folder, ignore_errors=True)
        folder = self._path(f"{_segment(layer, 'layer')}/{_segment(name, 'name')}")
        if folder.is_dir() and not folder.is_symlink() and (folder / MANIFEST).exists():
            self.store.wait_pruned(folder.as_posix())
            shutil.rmtree(folder, ignore_errors=True)

    def remove_superseded(self, layer: str, name: str) -> None:
        """The parts folders ``<layer>/.<name>.parquet.parts-*`` the output's link no longer points at, untouched for
        ``PARTS_GRACE_S`` (each promotion removes those of earlier ones, but only once that grace is over: a
        backfill's dates promoted within it left theirs, holding hard links to pruned per-date data)."""
        target = self._path(_location(layer, name))
        if target.is_symlink():
            remove_old_parts(target, keep={os.readlink(target)})

    def _append_folder(self, layer: str, name: str) -> tuple[str, Path]:
        location = f"{_segment(layer, 'layer')}/{_segment(name, 'name')}"
        return location, self._path(location)

    def flush(self) -> None:
        self.store.wait_pruned()

    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream a stored output back, one row group at a time (each part in order for a parts folder)."""
        path = self._existing(location)
        manifest = self._manifest(path)
        if manifest is not None:
            return self.store.reader(path.as_posix(), manifest)
        return read_parts(path.resolve()) if path.is_dir() else _read_file(path)

    def exists(self, location: str) -> bool:
        return _holds_output(self._path(location))

    def current_location(self, layer: str, name: str) -> str | None:
        """``<layer>/<name>.parquet`` (a plain output) or ``<layer>/<name>`` (a partitioned one), or None."""
        for location in (f"{layer}/{name}.parquet", f"{layer}/{name}"):
            if self.exists(location):
                return location
        return None

    def parquet_path(self, location: str) -> str:
        """The absolute path of ``location`` (for DuckDB's ``read_parquet``); a glob over the current
        version's files for a partitioned output (whose partition columns DuckDB sees only through
        :meth:`duckdb_input`); ``<parts folder>/*.parquet`` for a parts folder, given by its resolved name so
        a reader keeps reading one version while the output is replaced."""
        path = self._path(location)
        manifest = self._manifest(path)
        if manifest is not None and manifest.appended:
            raise TerminalError(
                f"lake location {location!r} is an append-only dataset (a streaming object's); "
                "read it through duckdb_input or parquet_files, no single path or glob holds only its committed files"
            )
        if manifest is not None:
            return f"{self.store.data_folder(path.as_posix(), manifest)}/v={manifest.version}/**/*.parquet"
        return str(path.resolve() / "*.parquet") if path.is_dir() else str(path)

    def duckdb_input(self, location: str) -> str | ds.Dataset:
        """The file's path (a parts folder's glob), or for a partitioned output a pyarrow dataset with its
        partition columns typed."""
        path = self._existing(location)
        manifest = self._manifest(path)
        if manifest is not None:
            return self.store.dataset(path.as_posix(), manifest)
        return str(path.resolve() / "*.parquet") if path.is_dir() else str(path)

    def versions(self, location: str) -> list[str]:
        """``["current"]`` for a file or parts-folder output; the version folders of a partitioned one, oldest first."""
        path = self._path(location)
        if path.is_dir() and not path.is_symlink():
            return self.store.versions(path.as_posix())
        return ["current"] if _holds_output(path) else []

    def _manifest(self, path: Path) -> Manifest | None:
        """The manifest of a partitioned output's folder; None for a file or a (linked) parts folder."""
        return self.store.manifest(path.as_posix()) if path.is_dir() and not path.is_symlink() else None

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
        if not _holds_output(path):
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
    fsync_folder(Path(path).parent)


def _holds_output(path: Path) -> bool:
    """A Parquet file, a link to a parts folder (Spark), or a partitioned output's committed folder."""
    if path.is_symlink():
        return path.is_dir() or path.is_file()
    return path.is_file() or (path / MANIFEST).is_file()


def _read_file(path: Path) -> pa.RecordBatchReader:
    parquet = pq.ParquetFile(path)
    batches = parquet.iter_batches(batch_size=ROW_GROUP_ROWS)
    return pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches)


def _location(layer: str, name: str) -> str:
    return f"{_segment(layer, 'layer')}/{_segment(name, 'name')}.parquet"


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.match(value) or ".." in value:
        raise TerminalError(f"lake {what} {value!r} cannot be used as a file name; use letters, digits, '_', '-', '.' or spaces")
    return value


def _write_parquet(path: Path, data: pa.RecordBatchReader) -> int:
    """Write every batch, gathering small batches into row groups of about ROW_GROUP_ROWS rows."""
    rows, pending, pending_rows = 0, list[pa.RecordBatch](), 0
    with pq.ParquetWriter(path, data.schema, **WRITER_OPTIONS) as writer:
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
    """xxh3-128 of the file's bytes (32 hex digits), as a kept source file is hashed while copied (kept_files)."""
    digest = xxhash.xxh3_128()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: str | Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
