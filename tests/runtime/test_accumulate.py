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
    assert "\n" not in message and "sluice state reset" not in message  # reading everything again cannot help


def test_a_misspelt_key_says_where_to_correct_it_not_to_read_everything_again(lake: LocalLake) -> None:
    location = lake.current_location("raw", "things")
    delta = pa.table({"id": [9], "name": ["z"]})
    with pytest.raises(TerminalError) as raised:
        Accumulation.open(lake, location, delta.to_reader(), ("idd",), "object 1001 (things)", key_setting="KEY AT sluice.yaml:7")
    message = str(raised.value)
    assert "Did you mean 'id'?" in message and message.endswith("Correct KEY AT sluice.yaml:7"), message
    assert "state reset" not in message


def test_a_key_missing_from_the_previous_output_only_says_to_read_everything_again(lake: LocalLake) -> None:
    location = lake.current_location("raw", "things")
    delta = pa.table({"id": [9], "sku": ["z"]})
    with pytest.raises(TerminalError) as raised:
        Accumulation.open(lake, location, delta.to_reader(), ("sku",), "object 1001 (things)", reread="REREAD")
    assert "'sku' is not in the previous lake output" in str(raised.value)
    assert str(raised.value).endswith("(columns: id, name, ts); REREAD")


def previous_prices(tmp_path: Path, prices: pa.Array) -> tuple[LocalLake, str]:
    lake = LocalLake(tmp_path / "priced")
    lake.write("raw", "items", pa.table({"id": list(range(1, len(prices) + 1)), "price": prices}).to_reader())
    location = lake.current_location("raw", "items")
    assert location is not None
    return lake, location


def test_a_column_that_turned_from_numbers_to_text_fails_naming_both_types_and_rewrites_nothing(tmp_path: Path) -> None:
    """DuckDB's UNION ALL BY NAME would turn the whole column into text ('10.0'): refused before anything is written."""
    lake, location = previous_prices(tmp_path, pa.array([10.0, 21.5]))
    delta = pa.table({"id": [7, 8], "price": ["7", "n/a"]})
    with pytest.raises(TerminalError) as raised:
        Accumulation.open(lake, location, delta.to_reader(), ("id",), "object 1001 (items)", reread="REREAD")
    message = str(raised.value)
    assert message.startswith("object 1001 (items): column 'price' is double in the previous lake output but string in ")
    assert "\n" not in message and message.endswith("the cursor did not move: declare its type (column_types) and REREAD")
    assert lake.read(location).read_all().column("price").to_pylist() == [10.0, 21.5]


@pytest.mark.parametrize(
    ("previous", "delta", "kind"),
    [
        (pa.array([10, 21], pa.int32()), pa.array([7], pa.int64()), pa.int64()),  # a wider integer
        (pa.array([10, 21], pa.int64()), pa.array([7.5], pa.float64()), pa.float64()),  # integers and a float
        (pa.array([10.5, 21.0]), pa.array([7], pa.int64()), pa.float64()),
        (pa.array([10, 21], pa.int64()), pa.array([7], pa.decimal128(10, 2)), pa.decimal128(21, 2)),
        (pa.array([None, None], pa.null()), pa.array(["7"]), pa.string()),  # a column null so far takes the new type
    ],
)
def test_a_column_widens_only_where_every_value_stays_exact(
    tmp_path: Path, previous: pa.Array, delta: pa.Array, kind: pa.DataType
) -> None:
    lake, location = previous_prices(tmp_path, previous)
    accumulation = Accumulation.open(lake, location, pa.table({"id": [9], "price": delta}).to_reader(), ("id",), "o")
    try:
        merged = accumulation.merged().read_all().sort_by("id")
    finally:
        accumulation.close()
    assert merged.schema.field("price").type == kind
    assert merged.column("price").to_pylist() == [*previous.cast(kind).to_pylist(), delta.cast(kind)[0].as_py()]


def test_integers_a_double_would_round_are_refused(tmp_path: Path) -> None:
    lake, location = previous_prices(tmp_path, pa.array([2**53 + 1], pa.int64()))
    delta = pa.table({"id": [9], "price": [0.5]})
    with pytest.raises(
        TerminalError, match=r"column 'price' becomes double .* 1 integer\(s\) of the previous lake output exceed"
    ):
        Accumulation.open(lake, location, delta.to_reader(), ("id",), "o")


def test_a_read_of_everything_keeps_the_last_record_of_each_key_in_the_order_read(lake: LocalLake) -> None:
    """A first run (or one after a reset) keeps what an incremental run would: the last record of each key."""
    delta = pa.table({"id": [9, 2, 9, 1, 2], "name": ["first", "b", "second", "a", "b2"]})
    keyed = Accumulation.open(lake, None, delta.to_reader(), ("id",), "o")
    plain = Accumulation.open(lake, None, delta.to_reader(), (), "o")
    try:
        merged = keyed.merged().read_all()
        assert list(zip(merged.column("id").to_pylist(), merged.column("name").to_pylist(), strict=True)) == [
            (9, "second"),
            (1, "a"),
            (2, "b2"),
        ]
        assert keyed.delta().read_all() == delta  # a destination in append or merge mode is given what was read
        assert plain.merged().read_all() == delta
    finally:
        keyed.close()
        plain.close()


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


ADDR = pa.struct([("zip", pa.string()), ("city", pa.string())])
NULL_ZIP = pa.struct([("zip", pa.null()), ("city", pa.string())])


def previous_addresses(tmp_path: Path) -> tuple[LocalLake, str]:
    lake = LocalLake(tmp_path / "addressed")
    addr = pa.array([{"zip": "10115", "city": "Berlin"}, {"zip": "75001", "city": "Paris"}], ADDR)
    tags = pa.array([["a"], ["b", "c"]], pa.list_(pa.string()))
    lake.write("raw", "items", pa.table({"id": [1, 2], "addr": addr, "tags": tags, "note": ["x", "y"]}).to_reader())
    location = lake.current_location("raw", "items")
    assert location is not None
    return lake, location


@pytest.mark.parametrize("rows", [0, 1], ids=["empty delta", "one record"])
def test_a_null_typed_field_of_the_delta_never_narrows_the_previous_type(tmp_path: Path, rows: int) -> None:
    """A delta whose records had only nulls in a field (top level, in a struct, in a list) is typed ``null`` there,
    and a run that finds nothing new reads as the last delta's schema: the previous concrete type wins, and an empty
    delta leaves the previous output as it was."""
    lake, location = previous_addresses(tmp_path)
    delta = pa.table(
        {
            "id": pa.array([3], pa.int64()),
            "addr": pa.array([{"zip": None, "city": "Rome"}], NULL_ZIP),
            "tags": pa.array([[None]], pa.list_(pa.null())),
            "note": pa.array([None], pa.null()),
        }
    ).slice(0, rows)
    accumulation = Accumulation.open(lake, location, delta.to_reader(), ("id",), "object 1001 (items)")
    try:
        merged = accumulation.merged().read_all().sort_by("id")
    finally:
        accumulation.close()
    assert merged.schema.field("addr").type == ADDR
    assert merged.schema.field("tags").type == pa.list_(pa.string())
    assert merged.schema.field("note").type == pa.string()
    zips = ["10115", "75001", None][: 2 + rows]
    assert [a["zip"] for a in merged.column("addr").to_pylist()] == zips
    assert merged.column("note").to_pylist() == ["x", "y", None][: 2 + rows]
    if not rows:
        assert merged == lake.read(location).read_all().sort_by("id")  # unchanged


def test_an_empty_delta_of_other_types_keeps_the_previous_output_unchanged(tmp_path: Path) -> None:
    """Nothing read, nothing to refuse: the saved schema's types (even incompatible ones) do not matter."""
    lake, location = previous_prices(tmp_path, pa.array([10.5, 21.0]))
    delta = pa.schema([("id", pa.int64()), ("price", pa.string()), ("extra", pa.null())]).empty_table()
    accumulation = Accumulation.open(lake, location, delta.to_reader(), ("id",), "object 1001 (items)")
    try:
        merged = accumulation.merged().read_all()
        assert accumulation.delta().read_all().num_rows == 0
    finally:
        accumulation.close()
    assert merged == lake.read(location).read_all()
