"""Datasets committed through a manifest: atomic replacement on storage that has no rename (S3).

One dataset lives in a folder of any pyarrow file system::

    <folder>/_manifest.json                           the commit: which version is current, and its files
    <folder>/v=<version>/part-00000.parquet           one version's data (unpartitioned)
    <folder>/v=<version>/dt=2026-11-30/part-00000.parquet   (Hive-partitioned)

A write puts a whole new version under a key nobody reads yet while ``then`` loads the same batches
(:func:`sluice.lake.base.keep_then`), and once both are done writes the manifest: one small object
replaced by one PUT, which S3 makes visible all at once. Readers read the manifest first and open
exactly the files it lists, so they see the old version or the new one,
never part of either, and never the leftovers of a writer that died. The idea is the commit log of Delta
Lake and the metadata pointer of Apache Iceberg, reduced to a single pointer object per dataset (no
concurrent-writer conflict detection: the last commit wins, as with the local lake's rename).

Versions are named ``<unix ns, 19 digits>-<random>`` so that their names sort by age and tell it without
a listing of timestamps. Retention: the manifest keeps the ids of previous versions (newest first); a
commit keeps ``keep_versions`` versions in all (the current one included) and those younger than
``keep_s``, and deletes the rest, plus any uncommitted version older than ``orphan_grace_s`` (a writer
killed mid-write; a younger one may be a concurrent writer still at work).

A dataset may also **link** to the current version of a sibling dataset instead of holding data of its own
(:meth:`VersionedStore.link`): its manifest names the sibling (``linked``) and that sibling's version and files, so
the new current output costs one manifest PUT, not a copy of the data. This is how a per-date output
``<name>.ld-<stamp>`` (or a checked candidate ``<name>.candidate``) becomes the plain output ``<name>``
(:mod:`sluice.lake.dated`). A version a sibling links to is **pinned**: the linked dataset's pruning keeps it
(:func:`sluice.lake.dated.plain_name` tells which sibling may link to a dataset), however many newer versions it has.

Off the write's critical path: the previous manifest (the history the new one extends) is read while the
new version is written and loaded, and pruning runs in a thread of its own once the manifest is committed
(the write returns meanwhile). A later write to the same dataset, :meth:`VersionedStore.versions` and
:meth:`VersionedStore.wait_pruned` wait for it; a pruning that fails is logged (warning, with the error) and
what it left is deleted by a later write's pruning once older than ``orphan_grace_s``, as after a refused
delete; the thread is not a daemon, so the process does not exit halfway through it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa
import pyarrow.fs as pafs

from sluice.background import in_thread
from sluice.errors import TerminalError
from sluice.lake.base import LakeWrite, Then, keep_then
from sluice.lake.kept_files import SourceFile, copy_while_draining, keeps_as_encoded
from sluice.lake.parts import PART, ROW_GROUP_ROWS, WrittenParts, part_digest, write_parts

if TYPE_CHECKING:
    import pyarrow.dataset as ds

log = logging.getLogger("sluice.lake")

MANIFEST = "_manifest.json"
VERSION_PREFIX = "v="
FORMAT = 1


class Manifest(msgspec.Struct, frozen=True):
    """The committed state of one dataset (``_manifest.json``)."""

    format: int
    version: str
    files: list[str]
    rows: int
    content_hash: str
    partition_by: list[str]
    schema: str  # the Arrow schema, IPC-serialised, base64
    previous: list[str] = []
    appended: bool = False
    """An append-only dataset (:mod:`sluice.lake.appends`): ``files`` are every committed micro-batch's."""
    commit: dict[str, Any] | None = None
    """The last append's commit record (a streaming object's offsets), committed with its files."""
    token: str | None = None
    """The last append's idempotency token (Spark's batch id), if it gave one."""
    batches: int = 0
    """Micro-batches appended so far."""
    state: str | None = None
    """The file of the state committed with the last append (``v=<version>/_state.bin``), if any."""
    linked: str | None = None
    """The sibling dataset (its folder's name) whose version ``version`` and ``files`` are, when this one links to it
    (:meth:`VersionedStore.link`); None: the files are this dataset's own."""
    logical_date: str | None = None
    """The logical date (ISO text) whose data a promoted plain output holds (:mod:`sluice.lake.dated`), if any."""
    retired: dict[str, float] = {}
    """Of an append-only dataset: batch versions whose files a compaction rewrote, and when (Unix seconds); kept
    from pruning until the grace period has passed since then, for readers of the manifest before it."""

    def arrow_schema(self) -> pa.Schema:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema)))


@dataclass(frozen=True, slots=True)
class Retention:
    """How many versions a dataset keeps, how long, and when an uncommitted version counts as abandoned."""

    keep_versions: int = 2
    keep_s: float = 0.0
    orphan_grace_s: float = 3600.0


def new_version(now_ns: int | None = None) -> str:
    """A version id that sorts by creation time: ``1795000000000000000-3f2a9c1b``."""
    return f"{time.time_ns() if now_ns is None else now_ns:019d}-{secrets.token_hex(4)}"


def version_age_s(version: str, now: float | None = None) -> float:
    """Seconds since ``version`` was created (from its name); 0 for a name that is not a version id."""
    stamp = version.partition("-")[0]
    if not stamp.isdigit():
        return 0.0
    return max(0.0, (time.time() if now is None else now) - int(stamp) / 1e9)


class VersionedStore:
    """Reads and writes manifest-committed datasets on ``fs``; ``commit`` writes a manifest atomically.

    ``commit(path, data)`` must replace the object at ``path`` so that readers see the old bytes or the new
    ones (one PUT on S3; a temporary file renamed on a local disk).
    """

    def __init__(self, fs: pafs.FileSystem, commit: Callable[[str, bytes], None], retention: Retention) -> None:
        self.fs = fs
        self.commit = commit
        self.retention = retention
        self.pruned: set[str] = set()
        """Append-only datasets this store has looked for abandoned batches in (:mod:`sluice.lake.appends`)."""
        self._pruning: dict[str, threading.Thread] = {}  # folder: its pruning thread still running
        self._pruning_lock = threading.Lock()

    def manifest(self, folder: str) -> Manifest | None:
        """The dataset's manifest, or None when it was never committed."""
        try:
            with self.fs.open_input_stream(f"{folder}/{MANIFEST}") as stream:
                raw = stream.read()
        except FileNotFoundError:
            return None
        try:
            return msgspec.json.decode(raw, type=Manifest)
        except msgspec.DecodeError as exc:
            raise TerminalError(f"the lake manifest {folder}/{MANIFEST} is damaged ({exc}); write the object again") from exc

    def write(
        self,
        folder: str,
        location: str,
        data: pa.RecordBatchReader,
        *,
        partition_by: Sequence[str] = (),
        then: Then | None = None,
    ) -> LakeWrite:
        """Write ``data`` as a new version of the dataset in ``folder`` while ``then`` loads it, commit, prune.

        Raises what ``data``, ``then`` or the file system raise, after deleting the new version's files.
        """
        label = f"lake output {location!r}"
        return self._commit_version(
            folder,
            location,
            data,
            lambda version_folder, batches: write_parts(self.fs, version_folder, batches, partition_by, label=label),
            partition_by,
            then,
        )

    def write_file(
        self, folder: str, location: str, file: SourceFile, data: pa.RecordBatchReader, *, then: Then | None = None
    ) -> LakeWrite:
        """:meth:`write` of ``data`` (unpartitioned), the new version's one part a copy of ``file`` (hashed as
        :func:`~sluice.lake.parts.write_parts` hashes a part) when it reads back as the encoded batches would
        (:mod:`sluice.lake.kept_files`); ``then`` loads ``data`` meanwhile."""
        if not keeps_as_encoded(file, data.schema):
            return self.write(folder, location, data, then=then)

        def keep(version_folder: str, batches: pa.RecordBatchReader) -> WrittenParts:
            self.fs.create_dir(version_folder, recursive=True)
            with self.fs.open_output_stream(f"{version_folder}/{PART}") as out:
                rows, size, digest = copy_while_draining(file, batches, write=out.write)
            return WrittenParts((PART,), rows, part_digest(PART, size, digest))

        return self._commit_version(folder, location, data, keep, (), then)

    def _commit_version(
        self,
        folder: str,
        location: str,
        data: pa.RecordBatchReader,
        keep: Callable[[str, pa.RecordBatchReader], WrittenParts],
        partition_by: Sequence[str],
        then: Then | None,
    ) -> LakeWrite:
        """``keep`` fills a new version folder while ``then`` loads ``data`` (:func:`keep_then`); then the manifest
        commits it and older versions are pruned. Raises what ``data``, ``then``, ``keep`` or the file system
        raise, after deleting the new version's files."""
        self.wait_pruned(folder)  # its orphan pass must not see this version, still uncommitted, as abandoned
        version = new_version()
        version_folder = f"{folder}/{VERSION_PREFIX}{version}"
        # The history the new manifest extends, read while the version is written (a version another writer
        # commits meanwhile is left out of it, as the last commit wins anyway: pruned once abandoned)
        previous_manifest = in_thread(functools.partial(self.manifest, folder), "sluice-lake-manifest")
        try:
            written, published = keep_then(data, functools.partial(keep, version_folder), then)
            manifest = Manifest(
                FORMAT,
                version,
                [f"{VERSION_PREFIX}{version}/{name}" for name in written.files],
                written.rows,
                written.content_hash,
                list(partition_by),
                base64.b64encode(data.schema.serialize().to_pybytes()).decode(),
            )
            kept, dropped = self._retained(version, previous_manifest.result())
            manifest = msgspec.structs.replace(manifest, previous=kept)
            self.commit(f"{folder}/{MANIFEST}", msgspec.json.encode(manifest))
        except BaseException:
            previous_manifest.exception()  # no read left running against a folder being cleaned up
            _delete_folder(self.fs, version_folder)
            raise
        self._prune_later(folder, {version, *kept}, dropped)
        return LakeWrite(location=location, rows=written.rows, content_hash=written.content_hash, published=published)

    def link(self, folder: str, location: str, source_folder: str, logical_date: str | None = None) -> None:
        """Make the dataset in ``folder`` (``location``) hold the current version of the sibling dataset in
        ``source_folder`` by one manifest commit naming it (``linked``) and that version's files: nothing is copied,
        readers see the old output or the linked one. ``logical_date`` is recorded in the manifest
        (:attr:`Manifest.logical_date`). Older versions of ``folder`` are pruned as after a write. Raises
        TerminalError when ``source_folder`` holds no committed output or is not a sibling, and what the file
        system raises."""
        parent, _, sibling = source_folder.rpartition("/")
        if parent != folder.rpartition("/")[0]:
            raise TerminalError(f"lake output {location!r} can only link to a dataset beside it, not {source_folder!r}")
        source = self.manifest(source_folder)
        if source is None or source.appended:
            raise TerminalError(f"lake output {source_folder!r} holds no committed output to link {location!r} to")
        if source.linked is not None:  # link to the data itself, not through another link
            sibling = source.linked
        self.wait_pruned(folder)
        kept, dropped = self._retained(source.version, self.manifest(folder))
        manifest = msgspec.structs.replace(source, previous=kept, linked=sibling, logical_date=logical_date)
        self.commit(f"{folder}/{MANIFEST}", msgspec.json.encode(manifest))
        self._prune_later(folder, {source.version, *kept}, dropped)

    def data_folder(self, folder: str, manifest: Manifest) -> str:
        """The folder ``manifest``'s files are relative to: ``folder``, or the sibling it links to."""
        return f"{folder.rpartition('/')[0]}/{manifest.linked}" if manifest.linked else folder

    def reader(self, folder: str, manifest: Manifest) -> pa.RecordBatchReader:
        """Stream the version ``manifest`` names, columns in the written order, about ROW_GROUP_ROWS rows a batch."""
        import pyarrow.dataset as ds

        names = manifest.arrow_schema().names
        return ds.Scanner.from_dataset(self.dataset(folder, manifest), columns=names, batch_size=ROW_GROUP_ROWS).to_reader()

    def dataset(self, folder: str, manifest: Manifest) -> ds.Dataset:
        """A pyarrow dataset over exactly the files of ``manifest`` (partition columns typed as written)."""
        import pyarrow.dataset as ds

        if manifest.appended:
            from sluice.lake.appends import dataset

            return dataset(self, folder, manifest)

        schema = manifest.arrow_schema()
        partitioning = None
        if manifest.partition_by:
            partition_schema = pa.schema([schema.field(name) for name in manifest.partition_by])
            partitioning = ds.partitioning(partition_schema, flavor="hive")
        data = self.data_folder(folder, manifest)
        base = f"{data}/{VERSION_PREFIX}{manifest.version}"
        files = [f"{data}/{name}" for name in manifest.files]
        # Pre-buffered: each row group's column chunks fetched as a few coalesced, concurrent range requests, as
        # pq.read_table asks for too (pyarrow 26's default as well, spelled out so that a change of it shows here).
        parquet = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True))
        return ds.dataset(
            files, schema=schema, format=parquet, filesystem=self.fs, partitioning=partitioning, partition_base_dir=base
        )

    def versions(self, folder: str) -> list[str]:
        """The version folders present (committed or not), oldest first, once the folder's pruning is done."""
        self.wait_pruned(folder)
        return self._version_folders(folder)

    def wait_pruned(self, folder: str | None = None) -> None:
        """Return once the pruning started by a write to ``folder`` (None: to any folder) has finished."""
        with self._pruning_lock:
            threads = [t for f, t in self._pruning.items() if folder is None or f == folder]
        for thread in threads:
            thread.join()

    def _version_folders(self, folder: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        names = [info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory]
        return sorted(name.removeprefix(VERSION_PREFIX) for name in names if name.startswith(VERSION_PREFIX))

    def _retained(self, version: str, previous: Manifest | None) -> tuple[list[str], list[str]]:
        """Previous versions to keep (newest first) and those to drop, after committing ``version``."""
        if previous is None:
            return [], []
        history = [previous.version, *previous.previous]
        keep = max(1, self.retention.keep_versions) - 1
        kept = [
            v
            for i, v in enumerate(history)
            if v != version and (i < keep or (self.retention.keep_s and version_age_s(v) < self.retention.keep_s))
        ]
        return kept, [v for v in history if v not in kept and v != version]

    def _prune_later(self, folder: str, committed: set[str], dropped: Sequence[str]) -> None:
        """:meth:`_prune` in a thread of its own (not a daemon: the process waits for it at exit); a failure is
        logged, and a later write's pruning deletes what this one left once it is older than ``orphan_grace_s``."""

        def prune() -> None:
            try:
                self._prune(folder, committed, dropped)
            except Exception:
                log.warning(
                    "lake: pruning old versions of %s failed; a later write deletes them once older than orphan_grace_s",
                    folder,
                    exc_info=True,
                )
            finally:
                with self._pruning_lock:
                    if self._pruning.get(folder) is thread:
                        del self._pruning[folder]

        # Not a daemon, said explicitly: a thread inherits its creator's flag, and the writes come from the stage
        # workers' executors, daemons whose pruning the interpreter's exit would otherwise cut short (S3 finalised)
        thread = threading.Thread(target=prune, name="sluice-lake-prune", daemon=False)
        with self._pruning_lock:
            self._pruning[folder] = thread  # writes to a folder wait for its pruning first: one at a time
        thread.start()

    def _prune(self, folder: str, committed: set[str], dropped: Sequence[str]) -> None:
        """Delete dropped versions and abandoned ones (uncommitted, older than the grace period), but none a sibling
        links to (:meth:`pinned`); best effort."""
        committed = committed | self.pinned(folder)
        doomed = set(dropped)
        for version in self._version_folders(folder):
            if version not in committed and version_age_s(version) > self.retention.orphan_grace_s:
                doomed.add(version)
        for version in sorted(doomed - committed):
            _delete_folder(self.fs, f"{folder}/{VERSION_PREFIX}{version}")

    def pinned(self, folder: str) -> set[str]:
        """The versions of the dataset in ``folder`` that its plain sibling links to (:meth:`link`; at most one)."""
        from sluice.lake.dated import plain_name

        parent, _, name = folder.rpartition("/")
        plain = plain_name(name)
        if plain is None:
            return set()
        try:
            manifest = self.manifest(f"{parent}/{plain}")
        except TerminalError:  # a damaged manifest links to nothing we could honour
            return set()
        return {manifest.version} if manifest is not None and manifest.linked == name else set()


def _delete_folder(fs: pafs.FileSystem, folder: str) -> None:
    with contextlib.suppress(OSError):  # already gone, or the store refuses now; a later write's pruning retries
        fs.delete_dir(folder)
