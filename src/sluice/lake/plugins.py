"""The built-in lakes: Parquet files in a local folder, or versioned datasets on S3-compatible storage."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from sluice.plugins.base import Plugin, Settings


class LocalLakeOptions(Settings):
    """``lake: {type: local, path: lake}``, or just ``lake: lake``."""

    path: Annotated[str, Meta(description="Folder of the lake; relative to the project folder. Default: .sluice/lake.")] = ""
    keep_versions: Annotated[
        int, Meta(ge=1, description="Versions kept of a partitioned output, the current one included (file outputs keep one).")
    ] = 2


class S3LakeOptions(Settings):
    """``lake: s3://bucket/prefix?endpoint=http://127.0.0.1:29000``, or ``lake: {type: s3, url: ..., layers: {...}}``."""

    url: Annotated[
        str,
        Meta(
            description="s3://bucket or s3://bucket/prefix; a layer not in 'layers' goes to <url>/<layer>. Query options allowed."
        ),
    ] = ""
    endpoint: Annotated[
        str, Meta(description="S3 endpoint URL for S3-compatible servers (http://127.0.0.1:29000); empty: AWS S3 itself.")
    ] = ""
    region: Annotated[str, Meta(description="Region; default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1.")] = ""
    layers: Annotated[
        dict[str, str],
        Meta(
            description="Layer -> bucket or bucket/prefix, e.g. {raw: raw-data, cleaned: cleaned-data, curated: enriched-data}."
        ),
    ] = msgspec.field(default_factory=dict)
    connection: Annotated[
        str,
        Meta(
            description="A connection whose URL carries the credentials (s3://KEY:SECRET@ or http://KEY:SECRET@host:port, "
            "the latter also the endpoint); default: the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY environment."
        ),
    ] = ""
    keep_versions: Annotated[int, Meta(ge=1, description="Versions kept per output, the current one included.")] = 2
    keep_days: Annotated[
        float, Meta(ge=0, description="Also keep every version younger than this many days (0: by count only).")
    ] = 0.0
    orphan_grace_s: Annotated[
        float,
        Meta(
            ge=0,
            description="An uncommitted version (a writer that died) older than this many seconds is deleted by the next write.",
        ),
    ] = 3600.0
    create_buckets: Annotated[bool, Meta(description="Create a missing bucket on first write.")] = True

    def __post_init__(self) -> None:
        """Check bucket names and the endpoint when the project is validated (ValueError: one line)."""
        if self.url:
            bucket_root(self.url.partition("?")[0], "url")
        for layer, root in self.layers.items():
            bucket_root(root, f"layers: {layer}")
        if self.endpoint and (urlsplit(self.endpoint).scheme not in ("http", "https") or not urlsplit(self.endpoint).hostname):
            raise ValueError(f"endpoint {self.endpoint!r} is not an http(s) URL; write e.g. endpoint=http://127.0.0.1:29000")


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def bucket_root(text: str, option: str) -> str:
    """``bucket`` or ``bucket/prefix`` from ``s3://bucket/prefix``, ``bucket/prefix/`` or ``bucket``.

    Raises ValueError (one line naming ``option``) for an invalid bucket name (S3's rules: 3-63 characters,
    lower-case letters, digits, '.' and '-') or an empty or '..' prefix part.
    """
    root = text.removeprefix("s3://").strip("/")
    bucket, _, prefix = root.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"{option} {text!r} does not name a valid bucket; use 3-63 lower-case letters, digits, '.' or '-'")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(f"{option} {text!r} has an empty or '..' part in its prefix")
    return root


PLUGINS: list[Plugin] = [
    Plugin(
        "lake",
        "local",
        LocalLakeOptions,
        "sluice.lake.registry:open_local",
        "Parquet files in a local folder, one sub-folder per layer, replaced atomically.",
    ),
    Plugin(
        "lake",
        "s3",
        S3LakeOptions,
        "sluice.lake.registry:open_s3",
        "Versioned Parquet datasets on S3-compatible storage, layers as buckets or prefixes, committed by a manifest.",
        schemes=("s3",),
    ),
]
