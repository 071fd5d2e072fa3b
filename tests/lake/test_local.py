from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.errors import TerminalError
from sluice.lake.local import ROW_GROUP_ROWS, STALE_AFTER_S, LocalLake

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def batches_of(*sizes: int, start: int = 0) -> pa.RecordBatchReader:
    def generate() -> Iterator[pa.RecordBatch]:
        offset = start
        for size in sizes:
            ids = list(range(offset, offset + size))
            yield pa.record_batch([pa.array(ids), pa.array([f"n{i}" for i in ids])], schema=SCHEMA)
            offset += size

    return pa.RecordBatchReader.from_batches(SCHEMA, generate())


def test_write_then_read_back(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    written = lake.write("raw", "users", batches_of(3, 4))
    assert written.location == "raw/users.parquet"
    assert written.rows == 7
    assert lake.exists("raw/users.parquet")
    assert lake.parquet_path(written.location) == str(tmp_path.resolve() / "raw" / "users.parquet")
    table = lake.read(written.location).read_all()
    assert table.schema == SCHEMA
    assert table.column("id").to_pylist() == list(range(7))
    assert (tmp_path / "raw" / "users.parquet").stat().st_mode & 0o777 == 0o644


def test_files_are_zstd_compressed_and_small_batches_share_row_groups(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    written = lake.write("raw", "many", batches_of(*([1000] * 300)))
    metadata = pq.ParquetFile(lake.parquet_path(written.location)).metadata
    assert metadata.num_rows == 300_000
    assert metadata.num_row_groups <= -(-300_000 // ROW_GROUP_ROWS) + 1
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_content_hash_follows_the_content(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    first = lake.write("raw", "a", batches_of(5))
    again = lake.write("raw", "a", batches_of(2, 3))
    other = lake.write("raw", "a", batches_of(5, start=1))
    assert len(first.content_hash) == 32
    assert again.content_hash == first.content_hash
    assert other.content_hash != first.content_hash


def test_empty_reader_writes_a_file_with_the_schema(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    written = lake.write("cleaned", "none", pa.RecordBatchReader.from_batches(SCHEMA, iter(())))
    assert written.rows == 0
    table = lake.read(written.location).read_all()
    assert table.num_rows == 0
    assert table.schema == SCHEMA
    counted = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{lake.parquet_path(written.location)}')")
    assert counted.fetchall() == [(0,)]


def test_a_failing_write_keeps_the_previous_output_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    before = lake.write("raw", "users", batches_of(4))

    def broken() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([100]), pa.array(["x"])], schema=SCHEMA)
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match=r"source went away"):
        lake.write("raw", "users", pa.RecordBatchReader.from_batches(SCHEMA, broken()))
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == ["users.parquet"]
    assert lake.read(before.location).read_all().column("id").to_pylist() == [0, 1, 2, 3]


def test_a_then_step_reads_the_new_output_before_it_replaces_the_old_one(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    before = lake.write("raw", "users", batches_of(4))
    seen: list[int] = []

    def publish(data: pa.RecordBatchReader) -> int:
        seen.extend(data.read_all().column("id").to_pylist())
        assert lake.read(before.location).read_all().num_rows == 4  # the old output is still in place
        return 99

    written = lake.write("raw", "users", batches_of(2, start=10), then=publish)
    assert seen == [10, 11] and written.published == 99
    assert lake.read(written.location).read_all().column("id").to_pylist() == [10, 11]

    def refuse(data: pa.RecordBatchReader) -> int:
        raise RuntimeError("the table refused the rows")

    with pytest.raises(RuntimeError, match="refused"):
        lake.write("raw", "users", batches_of(5, start=50), then=refuse)
    assert lake.read(written.location).read_all().column("id").to_pylist() == [10, 11]
    assert sorted(path.name for path in (tmp_path / "raw").iterdir()) == ["users.parquet"]


def test_replacing_swaps_the_whole_file_at_once(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    lake.write("raw", "users", batches_of(4))
    target = Path(lake.parquet_path("raw/users.parquet"))
    old_inode = target.stat().st_ino
    with target.open("rb") as held:  # a reader holding the old file keeps reading the old bytes
        lake.write("raw", "users", batches_of(10))
        assert pq.read_table(held).num_rows == 4
    assert target.stat().st_ino != old_inode
    assert lake.read("raw/users.parquet").read_all().num_rows == 10


def test_stale_temporaries_of_a_crashed_write_are_cleared(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    (tmp_path / "raw").mkdir()
    stale = tmp_path / "raw" / ".users.parquet.crashed.tmp"
    fresh = tmp_path / "raw" / ".users.parquet.writing.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    old = stale.stat().st_mtime - STALE_AFTER_S - 10
    os.utime(stale, (old, old))
    lake.write("raw", "users", batches_of(1))
    assert not stale.exists()
    assert fresh.exists()  # may belong to a concurrent writer of the same output


@pytest.mark.parametrize("location", ["../x.parquet", "raw/../../x.parquet", "/etc/passwd", "", "C:/x.parquet"])
def test_locations_cannot_leave_the_lake(tmp_path: Path, location: str) -> None:
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(TerminalError, match=r"lake location"):
        lake.parquet_path(location)


def test_symlinks_out_of_the_lake_are_refused(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "lake" / "raw").symlink_to(tmp_path / "outside")
    with pytest.raises(TerminalError, match=r"outside the lake"):
        LocalLake(tmp_path / "lake").write("raw", "x", batches_of(1))


@pytest.mark.parametrize(("layer", "name"), [("..", "x"), ("raw", "../x"), ("raw", "a/b"), ("", "x"), ("raw", ".hidden")])
def test_layer_and_name_must_be_plain_file_names(tmp_path: Path, layer: str, name: str) -> None:
    with pytest.raises(TerminalError, match=r"cannot be used as a file name"):
        LocalLake(tmp_path).write(layer, name, batches_of(1))


def test_reading_a_missing_output_says_what_to_do(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    assert not lake.exists("raw/nope.parquet")
    with pytest.raises(TerminalError, match=r"holds no output.*run the object that writes it first"):
        lake.read("raw/nope.parquet")
