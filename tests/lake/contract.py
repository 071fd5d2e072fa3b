"""What every lake backend must do, as fixtures the contract tests run over each backend.

``backend`` (parametrised: ``local``, ``s3``) is a :class:`Backend`: it opens lakes of one kind with a
retention of the test's choosing, over the same storage, and runs a writer in a child process (for the
kill -9 test). S3 tests get a fresh bucket on the versitygw server of ``scripts/servers/s3.sh``.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sluice.lake.base import Lake
from sluice.lake.versioned import Retention

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
CHILD = Path(__file__).with_name("writer_child.py")


def batches_of(*sizes: int, start: int = 0) -> pa.RecordBatchReader:
    def generate() -> Iterator[pa.RecordBatch]:
        offset = start
        for size in sizes:
            ids = list(range(offset, offset + size))
            yield pa.record_batch([pa.array(ids), pa.array([f"n{i}" for i in ids])], schema=SCHEMA)
            offset += size

    return pa.RecordBatchReader.from_batches(SCHEMA, generate())


def open_lake(spec: dict[str, Any], retention: Retention | None = None) -> Lake:
    """A lake from a JSON-able spec (``{"kind": "local", "root": ...}`` or ``{"kind": "s3", "url": ..., "bucket": ...}``)."""
    if spec["kind"] == "local":
        from sluice.lake.local import LocalLake

        return LocalLake(Path(spec["root"]), retention)
    from sluice.lake.s3 import S3Lake, s3_filesystem

    return S3Lake(s3_filesystem(spec["url"]), {}, default_root=spec["bucket"], retention=retention)


@dataclass
class Backend:
    kind: str
    spec: dict[str, Any]
    listing: Callable[[], list[str]]

    def lake(self, retention: Retention | None = None) -> Lake:
        return open_lake(self.spec, retention)

    def location(self, layer: str, name: str, *, partitioned: bool = False) -> str:
        return f"{layer}/{name}.parquet" if self.kind == "local" and not partitioned else f"{layer}/{name}"

    def child_writer(
        self, layer: str, name: str, rows: int, *, partition_by: str = "", when: str = "streaming"
    ) -> subprocess.Popen[str]:
        """A process writing ``rows`` rows to ``layer/name``, printing ``writing`` at ``when`` (writer_child.py)."""
        arguments = [sys.executable, str(CHILD), json.dumps(self.spec), layer, name, str(rows), partition_by, when]
        return subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        root = tmp_path / "lake"

        def local_listing() -> list[str]:
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

        yield Backend("local", {"kind": "local", "root": str(root)}, local_listing)
        return
    import pyarrow.fs as pafs

    from sluice.lake.s3 import s3_filesystem

    url = request.getfixturevalue("s3_url")
    bucket = f"sluice-test-{uuid.uuid4().hex[:12]}"
    fs = s3_filesystem(url)

    def s3_listing() -> list[str]:
        selector = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
        return sorted(
            info.path.removeprefix(bucket + "/") for info in fs.get_file_info(selector) if info.type == pafs.FileType.File
        )

    yield Backend("s3", {"kind": "s3", "url": url, "bucket": bucket}, s3_listing)
    _delete_bucket(url, bucket)


def _delete_bucket(url: str, bucket: str) -> None:
    from urllib.parse import unquote, urlsplit

    import pyarrow.fs as pafs

    parts = urlsplit(url)
    fs = pafs.S3FileSystem(
        access_key=unquote(parts.username or ""),
        secret_key=unquote(parts.password or ""),
        endpoint_override=f"{parts.hostname}:{parts.port}",
        scheme=parts.scheme,
        region="us-east-1",
        allow_bucket_deletion=True,
    )
    with contextlib.suppress(OSError):
        fs.delete_dir(bucket)
