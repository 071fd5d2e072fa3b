"""Append-only datasets committed through the manifest: micro-batches of a streaming object, each with its offsets.

The layout is :mod:`sluice.lake.versioned`'s (one folder per dataset, ``_manifest.json`` the commit), but a
commit *adds* a version instead of replacing the current one::

    <folder>/_manifest.json                         every committed file, and the last commit's record
    <folder>/v=<version>/part-00000.parquet         one micro-batch (a Spark batch: its own part files)

An append writes the batch's files under a new ``v=<version>/`` no reader looks at, then replaces the
manifest with one listing the old files plus the new ones *and* the caller's commit record (for a
streaming object: per topic and partition the next offset to read, the batch number, a reference to the
window operator's state). Files and offsets therefore become visible in the same atomic step (one PUT on
S3, one rename on a local disk): a writer killed before it leaves files nobody reads (pruned after the
grace period), killed after it leaves a commit whose offsets say where to resume. This is the idea of
Delta Lake's ``txn`` action (an application id and version committed with the data files, which Spark
Structured Streaming's Delta sink uses for exactly-once output) reduced to one record per dataset.

An optional ``token`` (Spark's batch id) makes a commit idempotent: committing the token of the last
commit again adds nothing (Spark replays its last batch after a restart).

Readers open exactly the manifest's files (``FileSystemDataset.from_paths``: no listing and no footer read
when the dataset is built), so thousands of small micro-batch files stay cheap to open; each file is still
one request when scanned.

**Compaction** (:func:`compact`) rewrites runs of small committed files into files of about a target size, in
manifest order, and commits the manifest with the new files in their place (the same rows, content hash,
commit record, token and state): one atomic step again, so a reader sees the old files or the new ones, never
both or neither. Only the dataset's writer may run it (between two of its appends: the manifest has no
compare-and-swap, so a compaction racing an append would drop that append). The rewritten batches' folders
are recorded in the manifest as ``retired`` and kept until the grace period (``orphan_grace_s``) has passed
since, so a reader that opened the previous manifest still finds its files. This is the idea of Delta Lake's
``OPTIMIZE`` (bin-packing small files into a new version, the old files removed by a later ``VACUUM`` after a
retention period), on the lake's manifest.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import xxhash

from sluice.errors import TerminalError
from sluice.lake.base import Compacted, LakeWrite, StagedAppend
from sluice.lake.parts import write_parts
from sluice.lake.versioned import FORMAT, MANIFEST, VERSION_PREFIX, Manifest, VersionedStore, new_version, version_age_s

if TYPE_CHECKING:
    import pyarrow.dataset as ds

STATE_FILE = "_state.bin"
PRUNE_EVERY = 64
"""Abandoned batch folders (a writer killed mid-batch) are looked for at a writer's first append to a dataset, then
every this many micro-batches (a listing of the dataset's folders)."""


def appended(manifest: Manifest | None) -> bool:
    """True when ``manifest`` is an append-only dataset's (written by :func:`append`)."""
    return manifest is not None and manifest.appended


def append(
    store: VersionedStore,
    folder: str,
    location: str,
    data: pa.RecordBatchReader,
    *,
    commit: Mapping[str, Any],
    token: str | None = None,
    state: bytes | None = None,
) -> LakeWrite:
    """Write ``data`` as a new micro-batch of the dataset in ``folder`` and commit it with ``commit``.

    ``commit`` must be JSON-serialisable (offsets, batch number). ``token``: see the module. ``state`` (opaque
    bytes: a window operator's state) is written beside the batch as ``v=<version>/_state.bin`` and
    committed with it (:func:`last_state`); the previous batch's state file is deleted after the commit.
    A batch of no rows commits ``commit`` without adding a file (once the dataset has its first file).
    Raises TerminalError when the batch's schema cannot be unified with the dataset's (a column changing
    from a number to a string), or the dataset was written by a replacing write; errors of ``data`` and of
    the file system propagate, after the new files are deleted.
    """
    previous = _previous(store, folder, location)
    if token is not None and previous is not None and previous.token == token:
        return LakeWrite(location=location, rows=0, content_hash=previous.content_hash)
    version = new_version()
    version_folder = f"{folder}/{VERSION_PREFIX}{version}"
    try:
        written = write_parts(store.fs, version_folder, data, label=f"lake output {location!r}")
        files = [f"{VERSION_PREFIX}{version}/{name}" for name in written.files]
        if not written.rows and previous is not None:  # offsets only (every record dead-lettered or filtered out)
            for name in files:
                store.fs.delete_file(f"{folder}/{name}")
            files = []
        state_file = None
        if state is not None:
            state_file = f"{VERSION_PREFIX}{version}/{STATE_FILE}"
            with store.fs.open_output_stream(f"{folder}/{state_file}") as out:
                out.write(state)
        manifest = _commit(
            store, folder, location, previous, (version, files, written.content_hash), data.schema, written.rows, commit, token,
            state_file,
        )  # fmt: skip
    except BaseException:
        _delete_folder(store.fs, version_folder)
        raise
    if previous is not None and previous.state is not None and previous.state != manifest.state:
        with contextlib.suppress(OSError):
            store.fs.delete_file(f"{folder}/{previous.state}")
    if folder not in store.pruned or manifest.batches % PRUNE_EVERY == 0:  # a listing: not at every micro-batch
        store.pruned.add(folder)
        prune_orphans(store, folder, manifest)
    return LakeWrite(location=location, rows=written.rows, content_hash=manifest.content_hash)


def commit_staged(
    store: VersionedStore,
    folder: str,
    location: str,
    version: str,
    *,
    commit: Mapping[str, Any],
    token: str | None = None,
    schema: pa.Schema | None = None,
) -> LakeWrite:
    """Commit the Parquet parts an engine wrote under ``<folder>/v=<version>/`` as one micro-batch.

    Only ``*.parquet`` files count (Spark's ``_SUCCESS`` and ``.crc`` are ignored); rows and schema come
    from their footers, without reading data. ``schema``: the batch's schema as the engine means it, recorded in
    the manifest instead of the footers' when the engine cannot write its types (Spark writes a timestamp without
    a time zone in microseconds only): readers read the files through the manifest's schema, which casts them
    (safely: a value the cast would change fails the read). A ``token`` already committed last discards the parts
    and adds nothing. Raises TerminalError when no part was written, the footers' columns do not cast to
    ``schema``, or the schemas do not unify.
    """
    version_folder = f"{folder}/{VERSION_PREFIX}{version}"
    previous = _previous(store, folder, location)
    if token is not None and previous is not None and previous.token == token:
        _delete_folder(store.fs, version_folder)
        return LakeWrite(location=location, rows=0, content_hash=previous.content_hash)
    selector = pafs.FileSelector(version_folder, allow_not_found=True, recursive=False)
    infos = sorted(
        (info.base_name, info.size)
        for info in store.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith((".", "_"))
    )
    names = [name for name, _ in infos]
    parts_hash = xxhash.xxh3_128("".join(f"{name}\0{size}\n" for name, size in infos).encode()).hexdigest()
    if not names:
        raise TerminalError(f"lake output {location!r}: the staged batch {version_folder} holds no Parquet parts (*.parquet)")
    rows, found = 0, None
    for name in names:
        with store.fs.open_input_file(f"{version_folder}/{name}") as handle:
            meta = pq.ParquetFile(handle).metadata
            rows += meta.num_rows
            found = found or meta.schema.to_arrow_schema()
    assert found is not None
    if schema is not None:
        try:
            found.empty_table().cast(schema)  # the same columns, in order, of types that cast
        except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TerminalError(f"lake output {location!r}: the staged parts' columns do not cast to {schema}: {exc}") from exc
    files = [f"{VERSION_PREFIX}{version}/{name}" for name in names]
    batch = (version, files, parts_hash)
    manifest = _commit(store, folder, location, previous, batch, schema or found, rows, commit, token)
    return LakeWrite(location=location, rows=rows, content_hash=manifest.content_hash)


def compact(store: VersionedStore, folder: str, location: str, *, target_bytes: int, min_files: int) -> Compacted:
    """Rewrite runs of committed files smaller than ``target_bytes`` into files of about ``target_bytes`` (bytes),
    when at least ``min_files`` files would be rewritten; the last micro-batch's files are left as they are.

    One listing of the dataset's folder gives the sizes; each run is read through the manifest's schema (so
    batches whose columns widened read as the dataset does) and written with :func:`write_parts` under a new
    version; then one manifest commit. Raises TerminalError for a dataset that was not appended to; errors of the
    file system propagate after the new files are deleted (the manifest is then unchanged).
    """
    manifest = _previous(store, folder, location)
    if manifest is None:
        return Compacted(0, 0, 0)
    runs = _small_runs(store, folder, manifest, target_bytes)
    rewritten = sum(len(run) for run in runs)
    if rewritten < min_files:
        return Compacted(len(manifest.files), len(manifest.files), 0)
    import pyarrow.dataset as ds

    schema = manifest.arrow_schema()
    replaced: dict[str, str] = {}  # first file of a run -> the new file; the run's other files -> ""
    written: list[str] = []
    try:
        for run in runs:
            version = new_version()
            written.append(f"{folder}/{VERSION_PREFIX}{version}")
            source = ds.FileSystemDataset.from_paths(
                [f"{folder}/{name}" for name in run], schema=schema, format=ds.ParquetFileFormat(), filesystem=store.fs
            )
            parts = write_parts(store.fs, written[-1], source.scanner().to_reader(), label=f"lake output {location!r}")
            replaced.update(dict.fromkeys(run, ""))
            replaced[run[0]] = f"{VERSION_PREFIX}{version}/{parts.files[0]}"
        files = [replaced.get(name, name) for name in manifest.files]
        now = time.time()
        grace = store.retention.orphan_grace_s
        retired = {version: at for version, at in manifest.retired.items() if now - at < grace}
        retired.update(dict.fromkeys((name.split("/", 1)[0].removeprefix(VERSION_PREFIX) for name in replaced), now))
        updated = msgspec.structs.replace(manifest, files=[name for name in files if name], retired=retired)
        store.commit(f"{folder}/{MANIFEST}", msgspec.json.encode(updated))
    except BaseException:
        for path in written:
            _delete_folder(store.fs, path)
        raise
    return Compacted(len(manifest.files), len(updated.files), rewritten)


def _small_runs(store: VersionedStore, folder: str, manifest: Manifest, target_bytes: int) -> list[list[str]]:
    """Runs (in manifest order) of two or more consecutive small files, each run about ``target_bytes`` at most."""
    infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=True))
    sizes = {info.path.removeprefix(f"{folder}/"): info.size for info in infos if info.type == pafs.FileType.File}
    last = f"{VERSION_PREFIX}{manifest.version}/"
    runs: list[list[str]] = []
    run: list[str] = []
    total = 0
    for name in manifest.files:
        size = sizes.get(name)
        small = size is not None and size < target_bytes and not name.startswith(last)
        if run and (not small or total + (size or 0) > target_bytes):
            runs.append(run)
            run, total = [], 0
        if small:
            run.append(name)
            total += size or 0
    runs.append(run)
    return [run for run in runs if len(run) > 1]


def last_commit(store: VersionedStore, folder: str) -> dict[str, Any] | None:
    """The commit record of the dataset's last append, or None when nothing was appended yet."""
    manifest = store.manifest(folder)
    return dict(manifest.commit) if appended(manifest) and manifest is not None and manifest.commit is not None else None


def last_state(store: VersionedStore, folder: str) -> bytes | None:
    """The ``state`` committed with the last append (None: none was given)."""
    manifest = store.manifest(folder)
    if manifest is None or manifest.state is None:
        return None
    with store.fs.open_input_stream(f"{folder}/{manifest.state}") as stream:
        return bytes(stream.read())


def summary(store: VersionedStore, folder: str, location: str) -> LakeWrite | None:
    """The whole dataset (location, rows, content hash), or None when nothing was appended."""
    manifest = store.manifest(folder)
    if manifest is None or not manifest.appended:
        return None
    return LakeWrite(location=location, rows=manifest.rows, content_hash=manifest.content_hash)


def dataset(store: VersionedStore, folder: str, manifest: Manifest) -> ds.Dataset:
    """A pyarrow dataset over exactly the committed files of an append-only dataset (no listing, no footer read)."""
    import pyarrow.dataset as ds

    files = [f"{folder}/{name}" for name in manifest.files]
    return ds.FileSystemDataset.from_paths(
        files, schema=manifest.arrow_schema(), format=ds.ParquetFileFormat(), filesystem=store.fs
    )


def prune_orphans(store: VersionedStore, folder: str, committed: Manifest | None = None) -> None:
    """Delete batch folders no commit lists that are older than the grace period (writers killed mid-batch)."""
    manifest = store.manifest(folder) if committed is None else committed
    live = {name.split("/", 1)[0].removeprefix(VERSION_PREFIX) for name in (manifest.files if manifest else [])}
    if manifest is not None:
        live.add(manifest.version)
        now = time.time()
        live.update(version for version, at in manifest.retired.items() if now - at < store.retention.orphan_grace_s)
    for version in store.versions(folder):
        if version not in live and version_age_s(version) > store.retention.orphan_grace_s:
            _delete_folder(store.fs, f"{folder}/{VERSION_PREFIX}{version}")


def _previous(store: VersionedStore, folder: str, location: str) -> Manifest | None:
    previous = store.manifest(folder)
    if previous is not None and not previous.appended:
        raise TerminalError(
            f"lake output {location!r} was written as a whole (not appended to); "
            "a streaming object needs a name of its own in its layer"
        )
    return previous


def _commit(
    store: VersionedStore,
    folder: str,
    location: str,
    previous: Manifest | None,
    batch: tuple[str, list[str], str],
    schema: pa.Schema,
    rows: int,
    commit: Mapping[str, Any],
    token: str | None,
    state_file: str | None = None,
) -> Manifest:
    """Write the manifest listing the previous files plus the batch's (version, files, their hash) with ``commit``:
    the one atomic step."""
    version, files, parts_hash = batch
    if previous is not None:
        try:
            schema = pa.unify_schemas([previous.arrow_schema(), schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TerminalError(
                f"lake output {location!r}: the micro-batch's columns do not fit the dataset's ({exc}); "
                "cast the column in the object's sql or write to a new name"
            ) from exc
    digest = xxhash.xxh3_128(f"{previous.content_hash if previous else ''}\0{version}\0{parts_hash}".encode())
    manifest = Manifest(
        FORMAT,
        version,
        [*(previous.files if previous else []), *files],
        (previous.rows if previous else 0) + rows,
        digest.hexdigest(),
        [],
        base64.b64encode(schema.serialize().to_pybytes()).decode(),
        appended=True,
        commit=dict(commit),
        token=token,
        batches=(previous.batches if previous else 0) + 1,
        state=state_file,
        retired=previous.retired if previous else {},
    )
    try:
        encoded = msgspec.json.encode(manifest)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TerminalError(f"lake output {location!r}: the commit record is not JSON ({exc})") from exc
    store.commit(f"{folder}/{MANIFEST}", encoded)
    return manifest


def _delete_folder(fs: pafs.FileSystem, folder: str) -> None:
    with contextlib.suppress(OSError):
        fs.delete_dir(folder)


class VersionStaged(StagedAppend):
    """A micro-batch staged under ``<folder>/v=<version>/`` of a manifest-committed dataset."""

    def __init__(self, store: VersionedStore, folder: str, location: str, uri: str) -> None:
        self.store, self.folder, self.location = store, folder, location
        self.version = new_version()
        self.uri = f"{uri.rstrip('/')}/{VERSION_PREFIX}{self.version}"
        store.fs.create_dir(f"{folder}/{VERSION_PREFIX}{self.version}", recursive=True)

    def commit(self, *, commit: Mapping[str, Any], token: str | None = None, schema: pa.Schema | None = None) -> LakeWrite:
        try:
            return commit_staged(self.store, self.folder, self.location, self.version, commit=commit, token=token, schema=schema)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        manifest = self.store.manifest(self.folder)
        if manifest is None or not any(name.startswith(f"{VERSION_PREFIX}{self.version}/") for name in manifest.files):
            _delete_folder(self.store.fs, f"{self.folder}/{VERSION_PREFIX}{self.version}")
