"""A source's Parquet file kept as the lake output (sluice.lake.kept_files, Lake.write_file), on every backend."""

from __future__ import annotations

import datetime as dt
import decimal
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.contract import Backend
from sluice.errors import TransientError
from sluice.lake.base import Lake
from sluice.lake.kept_files import SourceFile, keeps_as_encoded
from sluice.transforms.sql import run_sql

TABLE = pa.table(
    {
        "id": pa.array(range(10), pa.int64()),
        "small": pa.array([1, None, -3, 4, 5, 6, 7, 8, 9, 10], pa.int16()),
        "text": pa.array(["é", None, "x y", "a", "b", "c", "d", "e", "f", "g"]),
        "day": pa.array([dt.date(2026, 11, 30)] * 9 + [None]),
        "at": pa.array([dt.datetime(2026, 11, 30, 12, i, tzinfo=dt.UTC) for i in range(10)], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([decimal.Decimal(f"{i}.10") for i in range(10)], pa.decimal128(10, 2)),
        "tags": pa.array([["a", "b"], [], None] + [["c"]] * 7, pa.list_(pa.string())),
    }
).replace_schema_metadata({"origin": "test"})


def source_file(
    path: Path, table: pa.Table = TABLE, batch_size: int = 3, **options: object
) -> tuple[SourceFile, pa.RecordBatchReader]:
    """``table`` written to ``path`` (snappy, small row groups: not how the lake writes) and a source's view of it."""
    pq.write_table(table, path, **{"compression": "snappy", "row_group_size": 4, **options})  # type: ignore[arg-type]
    opened = SourceFile.opened(path)
    parquet = pq.ParquetFile(path)
    return opened, pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches(batch_size=batch_size))


def stored_bytes(backend: Backend, lake: Lake, location: str) -> bytes:
    """The bytes of the one Parquet file holding ``location``."""
    (path,) = lake.parquet_files(location)
    if backend.kind == "local":
        return Path(path).read_bytes()
    with lake.fs.open_input_stream(path.removeprefix("s3://")) as stream:  # type: ignore[attr-defined]
        return bytes(stream.read())


def test_the_kept_file_is_the_output_and_reads_as_the_encoded_batches_would(backend: Backend, tmp_path: Path) -> None:
    lake = backend.lake()
    file, data = source_file(tmp_path / "in.parquet")
    loaded: list[pa.Table] = []
    kept = lake.write_file("raw", "kept", file, data, then=lambda r: loaded.append(r.read_all()) or 10)
    encoded = lake.write("raw", "encoded", _reader(file.path))
    expected = _reader(file.path).read_all()  # the source's view of the file (a list's item is named element)
    assert (kept.rows, kept.published) == (10, 10) and loaded[0].equals(expected)
    assert stored_bytes(backend, lake, kept.location) == file.path.read_bytes()  # the file itself, not encoded again
    assert stored_bytes(backend, lake, encoded.location) != file.path.read_bytes()
    # every reader sees the same table either way: the lake's own reader (schema and metadata included) and DuckDB
    for location in (kept.location, encoded.location):
        back = lake.read(location).read_all()
        assert back.schema.equals(expected.schema, check_metadata=True) and back.equals(expected)
    query = "SELECT * FROM t ORDER BY id"
    through_duckdb = [
        run_sql(query, {"t": lake.duckdb_input(w.location)}, object_label="test").read_all() for w in (kept, encoded)
    ]
    assert through_duckdb[0].schema == through_duckdb[1].schema and through_duckdb[0].equals(through_duckdb[1])


def _reader(path: Path) -> pa.RecordBatchReader:
    parquet = pq.ParquetFile(path)
    return pa.RecordBatchReader.from_batches(parquet.schema_arrow, parquet.iter_batches())


def test_keeping_the_lakes_own_file_gives_the_content_hash_write_gave(backend: Backend, tmp_path: Path) -> None:
    lake = backend.lake()
    written = lake.write("raw", "a", TABLE.to_reader(max_chunksize=4))
    copy = tmp_path / "lake-output.parquet"
    copy.write_bytes(stored_bytes(backend, lake, written.location))
    kept = lake.write_file("raw", "b", SourceFile.opened(copy), _reader(copy))
    assert stored_bytes(backend, lake, kept.location) == copy.read_bytes()
    assert kept.content_hash == written.content_hash  # same bytes, same hash, whichever way they were written
    other, data = source_file(tmp_path / "other.parquet", TABLE.slice(1))
    assert lake.write_file("raw", "b", other, data).content_hash != written.content_hash


def test_a_failing_then_leaves_the_old_output_and_nothing_else(backend: Backend, tmp_path: Path) -> None:
    lake = backend.lake()
    before = lake.write("raw", "users", TABLE.slice(0, 2).to_reader())
    listing = backend.listing()
    file, data = source_file(tmp_path / "in.parquet")

    def refuse(reader: pa.RecordBatchReader) -> int:
        reader.read_next_batch()
        raise RuntimeError("the table refused the rows")

    with pytest.raises(RuntimeError, match="refused"):
        lake.write_file("raw", "users", file, data, then=refuse)
    assert lake.read(before.location).read_all().equals(TABLE.slice(0, 2))
    assert backend.listing() == listing


def test_a_load_failing_after_the_copy_completed_leaves_the_old_output_and_nothing_else(backend: Backend, tmp_path: Path) -> None:
    """The copy (an upload on S3) runs while the destination loads; a load that fails once it is complete (the
    load's stream ends only then) commits nothing, and the copied version is deleted."""
    lake = backend.lake()
    before = lake.write("raw", "users", TABLE.slice(0, 2).to_reader())
    listing = backend.listing()
    file, data = source_file(tmp_path / "in.parquet")

    def fail_at_commit(reader: pa.RecordBatchReader) -> int:
        assert reader.read_all().num_rows == TABLE.num_rows  # the stream ended: the copy is complete
        raise RuntimeError("COPY failed at commit")

    with pytest.raises(RuntimeError, match="at commit"):
        lake.write_file("raw", "users", file, data, then=fail_at_commit)
    lake.flush()
    assert lake.read(before.location).read_all().equals(TABLE.slice(0, 2))
    assert backend.listing() == listing


def test_a_file_changed_after_the_source_opened_it_is_encoded_from_the_batches(backend: Backend, tmp_path: Path) -> None:
    lake = backend.lake()
    file, data = source_file(tmp_path / "in.parquet")
    stale = SourceFile(file.path, (*file.identity[:3], file.identity[3] - 1))  # as if rewritten since
    written = lake.write_file("raw", "users", stale, data)
    assert stored_bytes(backend, lake, written.location) != file.path.read_bytes()
    assert lake.read(written.location).read_all().equals(_reader(file.path).read_all())


def test_a_file_changing_during_the_copy_fails_as_transient_and_leaves_the_old_output(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sluice.lake.local
    import sluice.lake.versioned

    lake = backend.lake()
    before = lake.write("raw", "users", TABLE.slice(0, 2).to_reader())
    listing = backend.listing()
    file, data = source_file(tmp_path / "in.parquet")
    for module in (sluice.lake.local, sluice.lake.versioned):  # the check passes, then the file is not the one opened
        monkeypatch.setattr(module, "keeps_as_encoded", lambda *_: True)
    os.utime(file.path, ns=(file.identity[3] + 10**9, file.identity[3] + 10**9))
    with pytest.raises(TransientError, match="changed while it was read"):
        lake.write_file("raw", "users", file, data, then=lambda r: r.read_all().num_rows)
    assert lake.read(before.location).read_all().equals(TABLE.slice(0, 2))
    assert backend.listing() == listing


def test_a_file_the_lake_would_store_differently_is_encoded(backend: Backend, tmp_path: Path) -> None:
    lake = backend.lake()
    table = pa.table({"id": [1, 2], "at": pa.array([1_000, 2_000], pa.timestamp("ns"))})
    file, data = source_file(tmp_path / "int96.parquet", table, use_deprecated_int96_timestamps=True)
    written = lake.write_file("raw", "old", file, data)
    assert stored_bytes(backend, lake, written.location) != file.path.read_bytes()
    assert lake.read(written.location).read_all().equals(table)


def test_keeps_as_encoded_compares_what_readers_see(tmp_path: Path) -> None:
    import duckdb

    file, data = source_file(tmp_path / "arrow.parquet")
    assert keeps_as_encoded(file, data.schema)
    assert not keeps_as_encoded(file, data.schema.remove_metadata())  # not the file's own schema
    assert not keeps_as_encoded(file, pa.schema(list(data.schema)[:2]))  # some columns only
    int96, reader = source_file(tmp_path / "int96.parquet", use_deprecated_int96_timestamps=True)
    assert not keeps_as_encoded(int96, reader.schema)  # read as timestamp[ns], which the lake stores as INT64
    plain, decimal_ = tmp_path / "duckdb.parquet", tmp_path / "duckdb-decimal.parquet"
    duckdb.sql(f"COPY (SELECT 1::BIGINT AS id, 'x' AS s, DATE '2026-11-30' AS d, [1, 2] AS l) TO '{plain}'")
    duckdb.sql(f"COPY (SELECT 1.5::DECIMAL(10, 2) AS amount) TO '{decimal_}'")  # INT64 there, fixed-width bytes in Arrow's
    assert keeps_as_encoded(
        SourceFile.opened(plain), pq.ParquetFile(plain).schema_arrow
    )  # its Int(64) annotation is no type change
    assert not keeps_as_encoded(SourceFile.opened(decimal_), pq.ParquetFile(decimal_).schema_arrow)


def test_a_file_of_several_upload_parts_is_kept_byte_for_byte(backend: Backend, tmp_path: Path) -> None:
    import numpy as np

    noise = np.random.default_rng(7).integers(0, 2**63, size=4_000_000)  # incompressible: a file of about 32 MB
    table = pa.table({"id": pa.array(noise, pa.int64())})
    file, data = source_file(tmp_path / "big.parquet", table, 65_536, row_group_size=1_000_000)
    assert file.path.stat().st_size > 3 * (8 << 20)  # several copy chunks, and S3 parts uploaded as they come
    written = backend.lake().write_file("raw", "big", file, data, then=lambda r: r.read_all().num_rows)
    assert stored_bytes(backend, backend.lake(), written.location) == file.path.read_bytes()


def test_a_file_with_a_row_group_larger_than_the_limit_is_encoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sluice.lake.kept_files

    file, data = source_file(tmp_path / "in.parquet", row_group_size=10)
    assert keeps_as_encoded(file, data.schema)
    monkeypatch.setattr(
        sluice.lake.kept_files, "MAX_ROW_GROUP_BYTES", pq.ParquetFile(file.path).metadata.row_group(0).total_byte_size - 1
    )
    assert not keeps_as_encoded(file, data.schema)
