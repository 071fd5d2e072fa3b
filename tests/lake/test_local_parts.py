"""Outputs written by an engine itself (Spark) into the local lake's staging place: a folder of Parquet parts,
committed atomically, read like a file output (lake.read, DuckDB through parquet_path)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.lake.local import LocalLake
from sluice.lake.local_parts import PARTS_GRACE_S, STALE_AFTER_S


def fill(uri: str, *chunks: list[int]) -> Path:
    """Write one Parquet part per chunk into the staging folder, plus the marker files Spark leaves."""
    folder = Path(urlparse(uri).path)
    folder.mkdir(parents=True)
    for index, ids in enumerate(chunks):
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64())}), folder / f"part-{index:05d}-x.parquet")
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / ".part-00000-x.parquet.crc").write_bytes(b"crc")
    return folder


def test_a_committed_parts_folder_is_the_output(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    staged = lake.stage("cleaned", "users")
    assert staged.uri.startswith("file://") and "/cleaned/.users.parquet." in staged.uri
    fill(staged.uri, [1, 2], [3], [4, 5, 6])
    written = staged.commit()
    assert (written.location, written.rows) == ("cleaned/users.parquet", 6)
    assert lake.exists(written.location)
    assert lake.read(written.location).read_all().column("id").to_pylist() == [1, 2, 3, 4, 5, 6]
    path = lake.parquet_path(written.location)
    assert path.endswith("*.parquet")
    assert duckdb.sql(f"select sum(id) from read_parquet('{path}')").fetchall() == [(21,)]
    assert not list((tmp_path / "cleaned").glob("*.tmp"))


def test_the_content_hash_follows_the_data(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    hashes = []
    for ids in ([1, 2], [1, 2], [1, 3]):
        staged = lake.stage("raw", "x")
        fill(staged.uri, ids)
        hashes.append(staged.commit().content_hash)
    assert hashes[0] == hashes[1] != hashes[2]


def test_a_failing_then_leaves_the_previous_output(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    lake.write("raw", "x", pa.table({"id": [7]}).to_reader())
    staged = lake.stage("raw", "x")
    fill(staged.uri, [1, 2])

    def refuse(data: pa.RecordBatchReader) -> int:
        assert data.read_all().num_rows == 2
        raise RuntimeError("the destination refused")

    with pytest.raises(RuntimeError):
        staged.commit(then=refuse)
    staged.discard()
    assert lake.read("raw/x.parquet").read_all().column("id").to_pylist() == [7]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["x.parquet"]


def test_a_reader_keeps_its_version_while_the_output_is_replaced(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    first = lake.stage("raw", "x")
    fill(first.uri, [1])
    first.commit()
    held = lake.parquet_path("raw/x.parquet")  # a reader resolved the output
    for ids in ([2], [3]):
        staged = lake.stage("raw", "x")
        fill(staged.uri, ids)
        staged.commit()
    assert duckdb.sql(f"select id from read_parquet('{held}')").fetchall() == [(1,)]
    assert lake.read("raw/x.parquet").read_all().column("id").to_pylist() == [3]
    folders = list((tmp_path / "raw").glob(".x.parquet.parts-*"))
    assert len(folders) == 3  # none older than the grace period yet
    current = (tmp_path / "raw" / "x.parquet").resolve().name
    old = os.stat(folders[0]).st_mtime - PARTS_GRACE_S - 5
    for folder in folders:
        os.utime(folder, (old, old))
    lake.write("raw", "x", pa.table({"id": [4]}).to_reader())  # a file output again (DuckDB)
    assert not (tmp_path / "raw" / "x.parquet").is_symlink()
    assert lake.read("raw/x.parquet").read_all().column("id").to_pylist() == [4]
    remaining = [p.name for p in (tmp_path / "raw").glob(".x.parquet.parts-*")]
    assert remaining == [current]  # the version just replaced stays for readers in flight; older ones went


def test_an_abandoned_staging_folder_is_cleared_later(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    abandoned = fill(lake.stage("raw", "x").uri, [1])
    old = abandoned.stat().st_mtime - STALE_AFTER_S - 10
    os.utime(abandoned, (old, old))
    staged = lake.stage("raw", "x")
    assert not abandoned.exists()
    fill(staged.uri, [2])
    staged.commit()
    assert lake.read("raw/x.parquet").read_all().column("id").to_pylist() == [2]


def test_an_engine_that_wrote_no_parts_fails(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    staged = lake.stage("raw", "x")
    fill(staged.uri)
    with pytest.raises(Exception, match="wrote no Parquet parts"):
        staged.commit()
    staged.discard()
    assert not lake.exists("raw/x.parquet")
