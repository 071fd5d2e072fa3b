"""The bus format: SnapshotRows encode/decode, old ``op="r"`` change events still decode, snapshot messages."""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.cdc.base import SnapshotChunk
from sluice.cdc.events import ChangeEvent, Column, SnapshotRows, Source, TableSchema, decode, encode, key_text
from sluice.cdc.snapshot_messages import snapshot_messages

SOURCE = Source("mysql", "hr", [3, 120, 0], "bin.000003:120", 1_700_000_000_000_000, origin="s/hr", snapshot=True)
TABLE = TableSchema("hr", "emp", [Column("a", "string"), Column("id", "int64"), Column("v", "bytes")], ["id", "a"], version=2)
ROWS: list[list[Any]] = [["x", 1, b"\x00\xff"], ["y", 2, None], ["z", 2**63 - 1, b""]]


def test_snapshot_rows_round_trip_with_its_tag() -> None:
    message = SnapshotRows("hr.emp", SOURCE, ["a", "id", "v"], ROWS, ["id", "a"], schema_version=2)
    value = encode(message)
    assert msgspec.msgpack.decode(value)["kind"] == "rows"
    back = decode(value)
    assert isinstance(back, SnapshotRows) and back == message
    assert back.last_key() == [2**63 - 1, "z"]


def test_snapshot_rows_mean_the_same_as_r_events_which_still_decode() -> None:
    message = SnapshotRows("hr.emp", SOURCE, ["a", "id", "v"], ROWS, ["id", "a"], schema_version=2)
    events = message.events()
    assert events[1] == ChangeEvent("r", "hr.emp", [2, "y"], SOURCE, after={"a": "y", "id": 2, "v": None}, schema_version=2)
    assert [decode(encode(event)) for event in events] == events


def test_snapshot_messages_split_by_rows_and_bytes_keyed_by_first_row(monkeypatch: Any) -> None:
    import sluice.cdc.snapshot_messages as loop

    rows = [[f"k{i}", i, bytes(100)] for i in range(10)]
    chunk = SnapshotChunk("hr.emp", [], [9, "k9"], 10, columns=["a", "id", "v"], rows=rows, source=SOURCE)
    monkeypatch.setattr(loop, "MESSAGE_ROWS", 4)
    at = [9, 9, 9]
    messages = snapshot_messages(TABLE, chunk, at, "bin.000009:9")
    decoded = [decode(value) for _, value in messages]
    assert all(isinstance(m, SnapshotRows) for m in decoded)
    parts = [m.rows for m in decoded if isinstance(m, SnapshotRows)]
    assert [len(p) for p in parts] == [4, 4, 2] and [row for part in parts for row in part] == rows
    assert [key for key, _ in messages] == [key_text([0, "k0"]), key_text([4, "k4"]), key_text([8, "k8"])]
    assert all(m.source.position == at and m.schema_version == 2 for m in decoded if isinstance(m, SnapshotRows))
    monkeypatch.setattr(loop, "MESSAGE_BYTES", 300)  # about two rows of 100+ bytes: halves until under it
    small = [decode(value) for _, value in snapshot_messages(TABLE, chunk, at, "bin.000009:9")]
    assert sum(len(m.rows) for m in small if isinstance(m, SnapshotRows)) == 10 and len(small) > 3


def test_a_chunk_of_events_becomes_the_same_messages() -> None:
    rows_chunk = SnapshotChunk("hr.emp", [], None, 3, columns=["a", "id", "v"], rows=ROWS, source=SOURCE)
    events_chunk = SnapshotChunk("hr.emp", rows_chunk.as_events(TABLE.key), None, 3)
    at = SOURCE.position
    assert snapshot_messages(TABLE, events_chunk, at, "") == snapshot_messages(TABLE, rows_chunk, at, "")
