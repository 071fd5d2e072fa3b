"""The lake on S3-compatible object storage, through pyarrow's ``S3FileSystem`` (AWS SDK for C++).

Each layer maps to a bucket, or a prefix in one (``raw -> raw-data``, ``cleaned -> lake/cleaned``); an
output ``<layer>/<name>`` is the folder ``<bucket>/<prefix>/<name>/`` of versions committed by a manifest
(:mod:`sluice.lake.versioned`): S3 has no rename, so a new version is written under keys no reader looks
at, and one PUT of ``_manifest.json`` makes it current. Locations look like ``raw/users``.

Errors: a refused request (403, a missing bucket that cannot be created, a bad key) is a TerminalError
naming the bucket and what to check; a network failure or a 5xx answer (after the SDK's own retries) is a
TransientError, so the object is retried.

>>> lake = S3Lake(s3_filesystem("http://127.0.0.1:29000"), {"raw": "raw-data"})   # doctest: +SKIP
>>> lake.write("raw", "users", reader).location                                    # doctest: +SKIP
'raw/users'
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from sluice.errors import ConfigError, TerminalError, TransientError
from sluice.lake import appends
from sluice.lake.base import Compacted, Lake, LakeWrite, StagedAppend, StoredOutput, Then
from sluice.lake.plugins import bucket_root
from sluice.lake.versioned import MANIFEST, Manifest, Retention, VersionedStore, version_age_s

if TYPE_CHECKING:
    import pyarrow.dataset as ds

    from sluice.lake.kept_files import SourceFile

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-=]*$")
_TERMINAL = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "HTTP response code: 40",
)


def region_of(region: str) -> str:
    """``region``, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else ``us-east-1``."""
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@dataclass(frozen=True)
class S3Access:
    """How an S3 lake reaches its store, for engines that bring their own S3 client (Spark's s3a).

    ``endpoint``: ``http(s)://host:port`` (empty: AWS itself); ``region``: empty for ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION`` / ``us-east-1``; keys empty for the client's default credential chain.
    """

    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""


def s3a_options(access: S3Access, bucket: str) -> dict[str, str]:
    """Hadoop's S3A settings (``fs.s3a.bucket.<bucket>.*``, per bucket so lakes on other stores do not clash) that
    reach ``bucket`` as the lake's own client does: the endpoint with path-style access and TLS as its scheme says,
    the region, and the keys (``SimpleAWSCredentialsProvider``, or ``TemporaryAWSCredentialsProvider`` with a
    session token); without keys, S3A's default chain (environment, profile, instance role). Source: Hadoop's
    "Maximizing Performance / Per-bucket configuration" of the S3A documentation."""
    prefix = f"fs.s3a.bucket.{bucket}."
    options: dict[str, str] = {}
    access_key, secret_key = access.access_key, access.secret_key
    if access.endpoint:
        parts = urlsplit(access.endpoint)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        options["endpoint"] = f"{parts.scheme}://{host}"
        options["connection.ssl.enabled"] = "true" if parts.scheme == "https" else "false"
        options["path.style.access"] = "true"
        access_key = access_key or unquote(parts.username or "")
        secret_key = secret_key or unquote(parts.password or "")
    options["endpoint.region"] = (
        access.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    )
    if access_key or secret_key:
        options.update({"access.key": access_key, "secret.key": secret_key})
        provider = "SimpleAWSCredentialsProvider"
        if access.session_token:
            options["session.token"] = access.session_token
            provider = "TemporaryAWSCredentialsProvider"
        options["aws.credentials.provider"] = f"org.apache.hadoop.fs.s3a.{provider}"
    return {prefix + key: value for key, value in options.items()}


def s3_filesystem(
    endpoint: str = "",
    *,
    region: str = "",
    access_key: str = "",
    secret_key: str = "",
    session_token: str = "",
    request_timeout_s: float = 60.0,
) -> pafs.S3FileSystem:
    """An ``S3FileSystem`` for ``endpoint`` (``http://127.0.0.1:29000``; empty: AWS itself).

    Credentials: ``access_key``/``secret_key`` when given, else the AWS SDK's default chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, profiles, instance roles).
    Region: ``region``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else ``us-east-1``. Raises ConfigError
    for an endpoint that is not an http(s) URL.
    """
    options: dict[str, object] = {
        "region": region_of(region),
        "allow_bucket_creation": True,
        "request_timeout": request_timeout_s,
        "connect_timeout": min(request_timeout_s, 10.0),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
    }
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"lake (s3): endpoint {endpoint!r} is not an http(s) URL; write e.g. endpoint=http://127.0.0.1:29000"
            )
        options["scheme"] = parts.scheme
        options["endpoint_override"] = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
        access_key = access_key or unquote(parts.username or "")
        secret_key = secret_key or unquote(parts.password or "")
    if access_key or secret_key:
        options.update(access_key=access_key, secret_key=secret_key)
        if session_token:
            options["session_token"] = session_token
    return pafs.S3FileSystem(**options)


class S3Lake(Lake):
    """A lake whose layers are buckets or prefixes of an S3-compatible store.

    ``layers`` maps a layer to ``bucket`` or ``bucket/prefix``; a layer not in it goes to
    ``<default_root>/<layer>`` (``default_root`` being ``bucket`` or ``bucket/prefix``), and a layer with
    neither is a TerminalError at write time. ``access``: how ``fs`` reaches the store, for other clients.
    """

    def __init__(
        self,
        fs: pafs.FileSystem,
        layers: Mapping[str, str],
        *,
        default_root: str = "",
        retention: Retention | None = None,
        create_buckets: bool = True,
        access: S3Access | None = None,
    ) -> None:
        self.fs = fs
        self.access = access or S3Access()
        """The store's endpoint and credentials, for engines with their own S3 client (:func:`s3a_options`)."""
        self.layers = {layer: _root(root, f"layers: {layer}") for layer, root in layers.items()}
        self.default_root = _root(default_root, "url") if default_root else ""
        self.create_buckets = create_buckets
        self.store = VersionedStore(fs, self._put, retention or Retention())
        self._buckets: set[str] = set()

    def write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        *,
        then: Then | None = None,
        partition_by: Sequence[str] = (),
    ) -> LakeWrite:
        """Write ``data`` as a new version of ``<layer>/<name>`` and commit it through the manifest.

        ``then`` loads the new version's batches while they are written, before the commit; if it raises,
        the version's objects are deleted and the previous version stays current. Raises TerminalError /
        TransientError (see the module).
        """
        return self._write(layer, name, data, then, partition_by, None)

    def write_file(
        self, layer: str, name: str, file: SourceFile, data: pa.RecordBatchReader, *, then: Then | None = None
    ) -> LakeWrite:
        """:meth:`write` of ``data``, the new version's object uploaded from ``file`` as it is when it reads back as
        the encoded batches would (:meth:`VersionedStore.write_file <sluice.lake.versioned.VersionedStore.write_file>`)."""
        return self._write(layer, name, data, then, (), file)

    def _write(
        self,
        layer: str,
        name: str,
        data: pa.RecordBatchReader,
        then: Then | None,
        partition_by: Sequence[str],
        file: SourceFile | None,
    ) -> LakeWrite:
        location = f"{_name(layer, 'layer')}/{_name(name, 'name')}"
        folder = self._folder(location)
        raised_by_then: list[BaseException] = []

        def guarded(reader: pa.RecordBatchReader) -> int:
            assert then is not None
            try:
                return then(reader)
            except BaseException as exc:
                raised_by_then.append(exc)  # the destination's own error: not translated as a storage one
                raise

        with _translated(folder, raised_by_then):
            self._ensure_bucket(folder.partition("/")[0])
            if file is not None:
                return self.store.write_file(folder, location, file, data, then=guarded if then else None)
            return self.store.write(folder, location, data, partition_by=partition_by, then=guarded if then else None)

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
        """Add a micro-batch to the append-only dataset ``<layer>/<name>`` (see :meth:`Lake.append`)."""
        location, folder = self._append_folder(layer, name)
        with _translated(folder):
            self._ensure_bucket(folder.partition("/")[0])
            return appends.append(self.store, folder, location, data, commit=commit, token=token, state=state)

    def compact(self, layer: str, name: str, *, target_bytes: int, min_files: int) -> Compacted:
        """See :meth:`Lake.compact`."""
        location, folder = self._append_folder(layer, name)
        with _translated(folder):
            return appends.compact(self.store, folder, location, target_bytes=target_bytes, min_files=min_files)

    def last_commit(self, layer: str, name: str) -> dict[str, Any] | None:
        folder = self._append_folder(layer, name)[1]
        with _translated(folder):
            return appends.last_commit(self.store, folder)

    def last_state(self, layer: str, name: str) -> bytes | None:
        folder = self._append_folder(layer, name)[1]
        with _translated(folder):
            return appends.last_state(self.store, folder)

    def appended(self, layer: str, name: str) -> LakeWrite | None:
        location, folder = self._append_folder(layer, name)
        with _translated(folder):
            return appends.summary(self.store, folder, location)

    def stage_append(self, layer: str, name: str) -> StagedAppend:
        """A batch prefix ``s3://<bucket>/<prefix>/<name>/v=<version>`` (see :meth:`Lake.stage_append`)."""
        location, folder = self._append_folder(layer, name)
        with _translated(folder):
            self._ensure_bucket(folder.partition("/")[0])
            return appends.VersionStaged(self.store, folder, location, f"s3://{folder}")

    def checkpoint_folder(self, layer: str, name: str) -> str:
        """``s3://<layer root>/_checkpoints/<name>``: where an engine keeps its own checkpoint of the streaming
        dataset ``<layer>/<name>`` (Spark's), its bucket created if missing. No reader lists it (it has no manifest)."""
        root = self.root_of(_name(layer, "layer"))
        with _translated(root):
            self._ensure_bucket(root.partition("/")[0])
        return f"s3://{root}/_checkpoints/{_name(name, 'name')}"

    def parquet_files(self, location: str) -> list[str]:
        folder = self._folder(location)
        with _translated(folder):
            manifest = self._manifest(location, folder)
        data = self.store.data_folder(folder, manifest)
        return [f"s3://{data}/{name}" for name in manifest.files]

    def flush(self) -> None:
        self.store.wait_pruned()

    def read(self, location: str) -> pa.RecordBatchReader:
        """Stream the current version of ``location`` (``raw/users``) as Arrow batches."""
        folder = self._folder(location)
        with _translated(folder):
            return self.store.reader(folder, self._manifest(location, folder))

    def exists(self, location: str) -> bool:
        folder = self._folder(location)
        with _translated(folder):
            return self.store.manifest(folder) is not None

    def parquet_path(self, location: str) -> str:
        """The ``s3://`` URL of the current version's file (a glob when partitioned); DuckDB needs httpfs for it."""
        folder = self._folder(location)
        with _translated(folder):
            manifest = self._manifest(location, folder)
        if manifest.appended and len(manifest.files) > 1:
            raise TerminalError(
                f"lake location {location!r} is an append-only dataset (a streaming object's); "
                "read it through duckdb_input or parquet_files, no single URL or glob holds only its committed files"
            )
        data = self.store.data_folder(folder, manifest)
        if len(manifest.files) == 1 and not manifest.partition_by:
            return f"s3://{data}/{manifest.files[0]}"
        return f"s3://{data}/v={manifest.version}/**/*.parquet"

    def duckdb_input(self, location: str) -> ds.Dataset:
        """A pyarrow dataset over the current version's objects, for DuckDB to scan without httpfs."""
        folder = self._folder(location)
        with _translated(folder):
            return self.store.dataset(folder, self._manifest(location, folder))

    def versions(self, location: str) -> list[str]:
        folder = self._folder(location)
        with _translated(folder):
            return self.store.versions(folder)

    def promote(
        self, layer: str, name: str, location: str, logical_date: str | None = None, partition_by: Sequence[str] = ()
    ) -> None:
        """:meth:`Lake.promote` by one manifest PUT naming ``location``'s current version and files
        (:meth:`VersionedStore.link`): nothing is copied, and that version is kept while linked."""
        plain = f"{_name(layer, 'layer')}/{_name(name, 'name')}"
        folder = self._folder(plain)
        with _translated(folder):
            self.store.link(folder, plain, self._folder(location), logical_date)

    def promoted_date(self, layer: str, name: str) -> str | None:
        folder = self._folder(f"{_name(layer, 'layer')}/{_name(name, 'name')}")
        with _translated(folder):
            manifest = self.store.manifest(folder)
        if manifest is None:
            return None
        return manifest.logical_date if manifest.linked else super().promoted_date(layer, name)

    def outputs(self, layer: str, prefix: str) -> list[StoredOutput]:
        """The datasets ``<layer>/<prefix>*`` with a manifest, written when their current version was (its id's time)."""
        root = self.root_of(_name(layer, "layer"))
        found: list[StoredOutput] = []
        with _translated(root):
            infos = self.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
            for info in sorted(infos, key=lambda i: i.base_name):
                if info.type != pafs.FileType.Directory or not info.base_name.startswith(prefix):
                    continue
                manifest = self.store.manifest(info.path)
                if manifest is not None:
                    written_at = time.time() - version_age_s(manifest.version)
                    found.append(StoredOutput(info.base_name, f"{layer}/{info.base_name}", written_at))
        return found

    def remove(self, layer: str, name: str) -> None:
        """Delete the dataset's manifest first (readers then find no output), then every object under its folder."""
        folder = self._folder(f"{_name(layer, 'layer')}/{_name(name, 'name')}")
        with _translated(folder):
            self.store.wait_pruned(folder)
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(f"{folder}/{MANIFEST}")
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_dir(folder)

    def root_of(self, layer: str) -> str:
        """``bucket`` or ``bucket/prefix`` holding ``layer``'s outputs. Raises TerminalError for an unmapped layer."""
        root = self.layers.get(layer)
        if root is not None:
            return root
        if self.default_root:
            return f"{self.default_root}/{layer}"
        mapped = ", ".join(sorted(self.layers)) or "none"
        raise TerminalError(
            f"lake (s3): layer {layer!r} has no bucket (mapped layers: {mapped}); add it to 'lake: layers' or give 'lake: url'"
        )

    def _append_folder(self, layer: str, name: str) -> tuple[str, str]:
        """The location ``<layer>/<name>`` of an append-only dataset and its folder (``bucket/prefix/<name>``)."""
        location = f"{_name(layer, 'layer')}/{_name(name, 'name')}"
        return location, self._folder(location)

    def _folder(self, location: str) -> str:
        layer, slash, name = location.partition("/")
        if not slash or "/" in name:
            raise TerminalError(f"lake location {location!r} is not an S3 lake location; use '<layer>/<name>'")
        return f"{self.root_of(_name(layer, 'layer'))}/{_name(name, 'name')}"

    def _manifest(self, location: str, folder: str) -> Manifest:
        manifest = self.store.manifest(folder)
        if manifest is None:
            raise TerminalError(
                f"lake location {location!r} holds no output (no s3://{folder}/{MANIFEST}); run the object that writes it first"
            )
        return manifest

    def _ensure_bucket(self, bucket: str) -> None:
        if bucket in self._buckets:
            return
        info = self.fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            if not self.create_buckets:
                raise TerminalError(f"lake (s3): bucket {bucket!r} does not exist; create it or set 'lake: create_buckets: true'")
            self.fs.create_dir(bucket)
        self._buckets.add(bucket)

    def _put(self, path: str, content: bytes) -> None:
        """One PUT: S3 shows the object's old bytes or its new ones, never a mix."""
        with self.fs.open_output_stream(path) as out:
            out.write(content)


@contextmanager
def _translated(folder: str, passed: Sequence[BaseException] = ()) -> Iterator[None]:
    """Turn the SDK's OSErrors into a TerminalError (refused: 4xx) or a TransientError (network, 5xx);
    errors in ``passed`` (raised by a ``then`` step) propagate unchanged."""
    try:
        yield
    except OSError as exc:
        if any(exc is other for other in passed):
            raise
        if isinstance(exc, FileNotFoundError) or any(code in str(exc) for code in _TERMINAL):
            raise TerminalError(
                f"lake (s3): s3://{folder} refused: {_first_line(exc)}; check the bucket, the credentials and the endpoint"
            ) from exc
        raise TransientError(f"lake (s3): s3://{folder}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _name(value: str, what: str) -> str:
    if not _NAME.match(value) or ".." in value:
        raise TerminalError(f"lake {what} {value!r} cannot be used as an S3 key part; use letters, digits, '_', '-' or '.'")
    return value


def _root(text: str, option: str) -> str:
    try:
        return bucket_root(text, option)
    except ValueError as exc:
        raise ConfigError(f"lake (s3): {exc}") from None
