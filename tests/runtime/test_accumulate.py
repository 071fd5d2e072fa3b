"""An incremental source's new lake version: the previous output plus the delta, merged on a key or appended, with
the Arrow types of the data (not DuckDB's), and the delta alone for a destination once the version is written."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from sluice.errors import TerminalError
from sluice.lake.local import LocalLake
from sluice.runtime.accumulate import Accumulation

TS = pa.timestamp("ms", tz="UTC")


def at(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, tzinfo=dt.UTC)


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    lake = LocalLake(tmp_path / "lake")
    previous = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "ts": pa.array([at(1), at(2), at(3)], TS)})
    lake.write("raw", "things", previous.to_reader())
    return lake


def open_with(lake: LocalLake, delta: pa.Table, key: tuple[str, ...]) -> Accumulation:
    location = lake.current_location("raw", "things")
    assert location is not None
    return Accumulation.open(lake, location, delta.to_reader(), key, "object 1001 (things)")


def test_a_key_keeps_the_newest_record_of_each_key_and_the_types_of_the_data(lake: LocalLake) -> None:
    delta = pa.table(
        {"id": [2, 4, 4], "name": ["b2", "d", "d2"], "ts": pa.array([at(5), at(6), at(7)], TS), "extra": [True, None, False]}
    )
    accumulation = open_with(lake, delta, ("id",))
    try:
        merged = accumulation.merged().read_all().sort_by("id")
        assert accumulation.delta_rows == 3
        assert merged.column("name").to_pylist() == ["a", "b2", "c", "d2"]  # 4's last record wins
        assert merged.column("extra").to_pylist() == [None, True, None, False]  # a new column: null in earlier rows
        assert merged.schema.field("ts").type == TS  # not DuckDB's timestamp[us, tz=Etc/UTC]
        assert accumulation.delta().read_all() == delta
    finally:
        accumulation.close()


def test_without_a_key_the_delta_is_appended_and_an_empty_delta_keeps_the_previous_output(lake: LocalLake) -> None:
    delta = pa.table({"id": [2], "name": ["b2"], "ts": pa.array([at(9)], TS)})
    appended = open_with(lake, delta, ())
    empty = open_with(lake, delta.slice(0, 0), ("id",))
    try:
        assert sorted(appended.merged().read_all().column("name").to_pylist()) == ["a", "b", "b2", "c"]
        assert empty.merged().read_all().column("id").to_pylist() == [1, 2, 3]
    finally:
        appended.close()
        empty.close()


def test_a_key_missing_from_the_records_is_named_in_one_line(lake: LocalLake) -> None:
    with pytest.raises(TerminalError) as raised:
        open_with(lake, pa.table({"ident": [9], "name": ["z"]}), ("id",))
    message = str(raised.value)
    assert message.startswith("object 1001 (things): the key column 'id' is not in this run's records (columns: ident, name)")
    assert "\n" not in message and "sluice state reset" in message


def test_the_delta_step_loads_the_delta_and_ends_only_with_the_new_version(lake: LocalLake) -> None:
    accumulation = open_with(lake, pa.table({"id": [7], "name": ["g"], "ts": pa.array([at(7)], TS)}), ("id",))
    loaded: list[pa.Table] = []

    def publish(reader: pa.RecordBatchReader) -> int:
        loaded.append(reader.read_all())
        return loaded[-1].num_rows

    def failing_version() -> pa.RecordBatchReader:
        def batches():  # type: ignore[no-untyped-def]
            yield pa.record_batch({"id": [1]})
            raise OSError("disk full")

        return pa.RecordBatchReader.from_batches(pa.schema([("id", pa.int64())]), batches())

    try:
        step = accumulation.then_delta(publish)
        assert step(accumulation.merged()) == 1 and loaded[0].column("id").to_pylist() == [7]
        with pytest.raises(OSError, match="disk full"):  # the lake write failed: the load's stream raises
            step(failing_version())
    finally:
        accumulation.close()
