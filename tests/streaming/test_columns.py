"""Records in columns (sluice.streaming.columns) and their decoding, as the micro-batch loop hands them over."""

from __future__ import annotations

import gc
import threading

from sluice.streaming.columns import RECORD, Record, RecordColumns
from sluice.streaming.consumer import gc_paused
from sluice.streaming.dead_letters import dead_letters
from sluice.streaming.records import Decoder, RecordSettings


def _records() -> list[Record]:
    return [
        Record(b'{"id": 1}', b"a", "orders", 0, 10, 1_000, [("h", b"1")]),
        Record(None, b"b", "orders", 1, 20),  # a tombstone
        Record(b'{"id": 3}', None, "orders", 0, 11, None),
        Record(b"", None, "orders", 1, 21, 3_000),
    ]


def test_columns_keep_every_field_and_rebuild_each_record() -> None:
    records = _records()
    columns = RecordColumns.of(records, read=RECORD | {"_timestamp"})
    assert len(columns) == 4
    assert columns.lengths.tolist() == [9, -1, 9, 0]
    assert columns.partitions.tolist() == [0, 1, 0, 1] and columns.offsets.tolist() == [10, 20, 11, 21]
    assert columns.topic == "orders"
    assert columns.values() == [b'{"id": 1}', None, b'{"id": 3}', b""]
    assert list(columns) == records
    assert columns[-1] == records[-1] and columns[1:3] == records[1:3]
    assert columns.size == 18


def test_columns_without_timestamps_and_of_several_topics() -> None:
    records = [Record(b"{}", topic_="a"), Record(b"{}", topic_="b", timestamp_ms=5)]
    columns = RecordColumns.of(records)
    assert columns.timestamps is None and columns.topic == ["a", "b"]
    assert columns[1].timestamp() == (0, 0) and columns[1].topic() == "b"


def test_join_concatenates_parts_in_order() -> None:
    records = _records()
    parts = [RecordColumns.of(records[:1]), RecordColumns.of([]), RecordColumns.of(records[1:])]
    joined = RecordColumns.join(parts)
    assert list(joined) == [RecordColumns.of(records)[i] for i in range(4)]
    assert joined.data == RecordColumns.of(records).data
    mixed = RecordColumns.join([RecordColumns.of([Record(b"{}", topic_="a")]), RecordColumns.of([Record(b"{}", topic_="b")])])
    assert mixed.topic == ["a", "b"]
    assert len(RecordColumns.join([])) == 0


def test_decoding_columns_sets_bad_records_apart_and_keeps_metadata_aligned() -> None:
    decoder = Decoder(RecordSettings(schema={"id": "int64"}, columns=["_offset", "_partition", "_key", "_timestamp"]))
    columns = RecordColumns.of(_records(), read=RECORD | {"_timestamp"})
    decoded = decoder.decode(columns)
    assert [r.index for r in decoded.rejected] == [1, 3]
    assert decoded.batch.to_pydict() == {
        "id": [1, 3],
        "_offset": [10, 11],
        "_partition": [0, 0],
        "_key": ["a", None],
        "_timestamp": [decoded.batch.column("_timestamp")[0].as_py(), None],
    }
    assert decoded.batch.column("_timestamp")[0].value == 1_000
    [(key, value, headers)] = dead_letters(columns, decoded.rejected[:1])
    assert (key, value, headers[-1]) == (b"b", None, ("sluice.errors.offset", b"20"))


def test_decoding_columns_equals_decoding_the_messages() -> None:
    records = [Record(f'{{"id": {i}, "name": "n{i}"}}'.encode(), offset_=i) for i in range(1000)]
    settings = RecordSettings(columns=["_offset", "_headers", "_topic"])
    by_messages = Decoder(settings).decode(records).batch
    by_columns = Decoder(settings).decode(RecordColumns.join([RecordColumns.of(records[:400]), RecordColumns.of(records[400:])]))
    assert by_columns.batch.equals(by_messages) and not by_columns.rejected


def test_gc_paused_nests_across_threads_and_restores_the_collector() -> None:
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with gc_paused():
        assert not gc.isenabled()
        thread.start()
        entered.wait(10)
    assert not gc.isenabled()  # the other thread is still inside
    leave.set()
    thread.join(10)
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


def test_fields_not_read_are_left_out() -> None:
    records = _records()
    columns = RecordColumns.of(records, read=("_offset",))
    assert columns.keys is None and columns.headers is None and columns.partitions is None and columns.topic is None
    assert columns.offsets is not None and columns.offsets.tolist() == [10, 20, 11, 21]
    assert columns[0] == Record(b'{"id": 1}', None, "", 0, 10)
    joined = RecordColumns.join([columns, RecordColumns.of(records)])
    assert joined.keys is None and joined.topic is None and len(joined) == 8
    decoder = Decoder(RecordSettings(columns=["_offset"]))
    assert decoder.decode(records).batch.column("_offset").to_pylist() == [10, 11]
