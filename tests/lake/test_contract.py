"""The lake contract: every backend (local folder, S3 on versitygw) passes the same tests (fixtures in contract.py)."""

from __future__ import annotations

import datetime as dt
import decimal
import signal
import time
from collections.abc import Iterator

import pyarrow as pa
import pytest

from lake.contract import SCHEMA, Backend, batches_of
from sluice.errors import SluiceError, TerminalError
from sluice.lake.versioned import Retention, new_version
from sluice.transforms.sql import run_sql

TYPED = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "small": pa.array([1, None, -3], pa.int16()),
        "ratio": pa.array([0.5, None, 2.25], pa.float64()),
        "flag": pa.array([True, False, None]),
        "text": pa.array(["é", None, "x y"]),
        "day": pa.array([dt.date(2026, 11, 30), None, dt.date(1970, 1, 1)]),
        "at": pa.array([dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC), None, None], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-2.00")], pa.decimal128(10, 2)),
        "raw": pa.array([b"\x00\x01", None, b""]),
        "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
        "point": pa.array([{"x": 1, "y": 2}, None, {"x": 3, "y": None}], pa.struct([("x", pa.int32()), ("y", pa.int32())])),
    }
)


def ids(backend: Backend, location: str) -> list[int]:
    return sorted(backend.lake().read(location).read_all().column("id").to_pylist())


def test_round_trip_keeps_types_and_values(backend: Backend) -> None:
    lake = backend.lake()
    written = lake.write("raw", "typed", TYPED.to_reader(max_chunksize=2))
    assert written.location == backend.location("raw", "typed") and written.rows == 3
    back = lake.read(written.location).read_all()
    assert back.schema == TYPED.schema
    assert back.equals(TYPED)


def test_writing_again_replaces_the_output(backend: Backend) -> None:
    lake = backend.lake()
    lake.write("raw", "users", batches_of(4))
    written = lake.write("raw", "users", batches_of(2, start=10))
    assert ids(backend, written.location) == [10, 11]


def test_exists_and_a_missing_output_says_what_to_do(backend: Backend) -> None:
    lake = backend.lake()
    location = backend.location("raw", "users")
    assert not lake.exists(location)
    with pytest.raises(TerminalError, match=r"holds no output.*run the object that writes it first"):
        lake.read(location)
    lake.write("raw", "users", batches_of(1))
    assert lake.exists(location)


@pytest.mark.parametrize("partitioned", [False, True])
def test_content_hash_is_stable_for_identical_data(backend: Backend, partitioned: bool) -> None:
    lake = backend.lake()
    by = ["name"] if partitioned else []
    first = lake.write("raw", "a", batches_of(5), partition_by=by)
    again = lake.write("raw", "a", batches_of(2, 3), partition_by=by)
    other = lake.write("raw", "a", batches_of(5, start=1), partition_by=by)
    assert len(first.content_hash) == 32
    assert again.content_hash == first.content_hash
    assert other.content_hash != first.content_hash


def test_empty_output_keeps_its_schema(backend: Backend) -> None:
    lake = backend.lake()
    written = lake.write("cleaned", "none", pa.RecordBatchReader.from_batches(SCHEMA, iter(())))
    assert written.rows == 0
    table = lake.read(written.location).read_all()
    assert table.num_rows == 0 and table.schema == SCHEMA


def test_then_reads_the_new_data_before_it_replaces_the_old(backend: Backend) -> None:
    lake = backend.lake()
    before = lake.write("raw", "users", batches_of(4))
    seen: list[int] = []

    def publish(data: pa.RecordBatchReader) -> int:
        seen.extend(data.read_all().column("id").to_pylist())
        assert ids(backend, before.location) == [0, 1, 2, 3]  # not committed yet
        return 99

    written = lake.write("raw", "users", batches_of(2, start=10), then=publish)
    assert seen == [10, 11] and written.published == 99
    assert ids(backend, written.location) == [10, 11]


def test_a_failing_then_leaves_the_old_output_and_nothing_else(backend: Backend) -> None:
    lake = backend.lake()
    before = lake.write("raw", "users", batches_of(4))
    listing = backend.listing()

    def refuse(data: pa.RecordBatchReader) -> int:
        raise RuntimeError("the table refused the rows")

    with pytest.raises(RuntimeError, match="refused"):
        lake.write("raw", "users", batches_of(5, start=50), then=refuse)
    assert ids(backend, before.location) == [0, 1, 2, 3]
    assert backend.listing() == listing


def test_then_loads_while_the_output_is_written_and_its_stream_ends_once_the_output_is_complete(
    backend: Backend,
) -> None:
    lake = backend.lake()
    before = lake.write("raw", "users", batches_of(4))
    produced: list[int] = []
    first_seen_at: list[int] = []

    def source() -> Iterator[pa.RecordBatch]:
        for index in range(100):
            produced.append(index)
            yield pa.record_batch([pa.array([100 + index]), pa.array(["x"])], schema=SCHEMA)

    def publish(data: pa.RecordBatchReader) -> int:
        rows = 0
        for batch in data:
            if not first_seen_at:
                first_seen_at.append(len(produced))
            rows += batch.num_rows
        assert len(produced) == 100 and ids(backend, before.location) == [0, 1, 2, 3]  # complete, not committed
        return rows

    written = lake.write("raw", "users", pa.RecordBatchReader.from_batches(SCHEMA, source()), then=publish)
    assert written.published == 100 and ids(backend, written.location) == list(range(100, 200))
    assert first_seen_at and first_seen_at[0] < 100  # the load began before the source ended (bounded queue)


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_write_failing_while_then_loads_makes_then_fail_and_leaves_the_old_output(
    backend: Backend, partitioned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sluice.lake.local
    import sluice.lake.versioned

    lake = backend.lake()
    by = ["name"] if partitioned else []
    before = lake.write("raw", "users", batches_of(4), partition_by=by)
    listing = backend.listing()
    written_parts = sluice.lake.versioned.write_parts

    def write_then_fail(*args: object, **kwargs: object) -> object:
        written_parts(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError("the disk failed after the data was written")

    def flush_failed(path: str) -> None:
        raise OSError("the disk failed after the data was written")

    monkeypatch.setattr(sluice.lake.versioned, "write_parts", write_then_fail)
    monkeypatch.setattr(sluice.lake.local, "_fsync", flush_failed)
    outcome: list[str] = []

    def publish(data: pa.RecordBatchReader) -> int:
        try:
            rows = data.read_all().num_rows
        except BaseException:
            outcome.append("stream raised")  # a destination rolls back here
            raise
        outcome.append("stream ended")  # a destination would commit here
        return rows

    with pytest.raises((OSError, SluiceError), match="disk failed"):
        lake.write("raw", "users", batches_of(5, start=50), then=publish, partition_by=by)
    assert outcome == ["stream raised"]
    monkeypatch.undo()
    assert ids(backend, before.location) == [0, 1, 2, 3]
    assert backend.listing() == listing


def test_a_failing_source_leaves_the_old_output_and_nothing_else(backend: Backend) -> None:
    lake = backend.lake()
    before = lake.write("raw", "users", batches_of(4))
    listing = backend.listing()

    def broken() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([100]), pa.array(["x"])], schema=SCHEMA)
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match=r"source went away"):
        lake.write("raw", "users", pa.RecordBatchReader.from_batches(SCHEMA, broken()))
    assert ids(backend, before.location) == [0, 1, 2, 3]
    assert backend.listing() == listing


@pytest.mark.parametrize("when", ["streaming", "then"])
@pytest.mark.parametrize("partitioned", [False, True])
def test_a_writer_killed_mid_write_never_shows_a_partial_dataset(backend: Backend, partitioned: bool, when: str) -> None:
    lake = backend.lake()
    by = ["part"] if partitioned else []
    old = pa.table({"id": pa.array(range(1000), pa.int64()), "name": ["old"] * 1000, "part": pa.array([0] * 1000, pa.int64())})
    if not partitioned:
        old = old.drop_columns(["part"])
    before = lake.write("raw", "big", old.to_reader(), partition_by=by)
    listing = backend.listing()
    rows = 3_000_000 if when == "streaming" else 400_000
    child = backend.child_writer("raw", "big", rows, partition_by="part" if partitioned else "", when=when)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing", child.stderr.read() if child.stderr else ""
        for _ in range(3):  # readers during the write see the old version, whole
            table = lake.read(before.location).read_all()
            assert table.num_rows == 1000 and set(table.column("name").to_pylist()) == {"old"}
            time.sleep(0.05)
        if when == "then" or backend.kind == "local":  # (an S3 upload shows nothing before it completes)
            assert backend.listing() != listing  # the writer's data is there, uncommitted
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    table = lake.read(before.location).read_all()
    assert table.num_rows == 1000 and set(table.column("name").to_pylist()) == {"old"}
    # A later write cleans up what the killed writer left, once it is older than the grace period.
    cleaner = backend.lake(Retention(orphan_grace_s=0.0))
    after = cleaner.write("raw", "big", old.to_reader(), partition_by=by)
    assert after.rows == 1000
    cleaner.flush()  # pruning runs after the write returns
    assert len(backend.listing()) <= 2 * len(listing) + 1  # the old and the new version (and a manifest), no orphans


def test_partitioned_output_uses_hive_folders_and_reads_back(backend: Backend) -> None:
    lake = backend.lake()
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "dt": pa.array([dt.date(2026, 11, 30), dt.date(2026, 11, 30), dt.date(2026, 12, 1), None]),
            "who": ["a", "b/c", "d e", None],
        }
    )
    written = lake.write("raw", "events", table.to_reader(), partition_by=["dt"])
    assert written.location == backend.location("raw", "events", partitioned=True) and written.rows == 4
    folders = {path.split("/")[-2] for path in backend.listing() if path.endswith(".parquet")}
    assert folders == {"dt=2026-11-30", "dt=2026-12-01", "dt=__HIVE_DEFAULT_PARTITION__"}
    back = lake.read(written.location).read_all()
    assert back.schema == table.schema
    assert back.sort_by("id").equals(table)
    counted = run_sql(
        "SELECT dt, count(*) AS n FROM events WHERE dt IS NOT NULL GROUP BY dt ORDER BY dt",
        {"events": lake.duckdb_input(written.location)},
        object_label="3001 daily",
    ).read_all()
    assert counted.to_pylist() == [{"dt": dt.date(2026, 11, 30), "n": 2}, {"dt": dt.date(2026, 12, 1), "n": 1}]


@pytest.mark.parametrize(
    ("by", "message"),
    [(["nope"], r"partition_by column 'nope' is not in the output"), (["ratio"], r"has type double; partition by a string")],
)
def test_bad_partition_columns_are_one_line_errors(backend: Backend, by: list[str], message: str) -> None:
    lake = backend.lake()
    table = pa.table({"id": [1], "ratio": [0.5]})
    with pytest.raises(TerminalError, match=message) as raised:
        lake.write("raw", "bad", table.to_reader(), partition_by=by)
    assert "\n" not in str(raised.value)
    assert not lake.exists(backend.location("raw", "bad", partitioned=True))


@pytest.mark.parametrize("partitioned", [False, True])
def test_retention_keeps_the_newest_versions(backend: Backend, partitioned: bool) -> None:
    lake = backend.lake(Retention(keep_versions=2))
    by = ["name"] if partitioned else []
    for start in range(4):
        written = lake.write("raw", "kept", batches_of(3, start=start * 10), partition_by=by)
    versions = lake.versions(written.location)
    assert 1 <= len(versions) <= 2
    assert ids(backend, written.location) == [30, 31, 32]


def test_retention_by_age_keeps_young_versions(backend: Backend) -> None:
    lake = backend.lake(Retention(keep_versions=1, keep_s=3600.0))
    for start in range(3):
        written = lake.write("raw", "young", batches_of(2, start=start), partition_by=["name"])
    assert len(lake.versions(written.location)) == 3
    old = backend.lake(Retention(keep_versions=1, keep_s=0.0))
    written = old.write("raw", "young", batches_of(2), partition_by=["name"])
    assert len(old.versions(written.location)) == 1


def test_version_ids_sort_by_time() -> None:
    assert new_version(1_000) < new_version(2_000) < new_version()


@pytest.mark.parametrize(("layer", "name"), [("..", "x"), ("raw", "../x"), ("raw", "a/b"), ("", "x"), ("raw", ".hidden")])
def test_layer_and_name_errors_are_one_line_sluice_errors(backend: Backend, layer: str, name: str) -> None:
    with pytest.raises(SluiceError, match=r"lake (layer|name)") as raised:
        backend.lake().write(layer, name, batches_of(1))
    assert isinstance(raised.value, TerminalError)
    assert "\n" not in str(raised.value)


def test_an_empty_string_and_null_share_the_default_partition_and_no_row_is_lost(backend: Backend) -> None:
    """Hive (and Spark) name both '' and NULL ``__HIVE_DEFAULT_PARTITION__``: their rows go to one file (before, one
    group's file replaced the other's: a row lost, another listed twice) and '' reads back as NULL."""
    lake = backend.lake()
    table = pa.table({"id": pa.array([1, 2, 3, 4, 5], pa.int64()), "k": ["a/b", "", None, "x=y", "%20 é"]})
    written = lake.write("raw", "keys", table.to_reader(), partition_by=["k"])
    assert written.rows == 5
    back = lake.read(written.location).read_all().sort_by("id")
    assert back.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert back.column("k").to_pylist() == ["a/b", None, None, "x=y", "%20 é"]
