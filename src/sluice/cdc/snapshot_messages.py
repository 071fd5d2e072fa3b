"""Snapshot rows as bus messages: :class:`~sluice.cdc.events.SnapshotRows` of a few thousand rows each, under
Kafka's default message size, and their split over the partitions of a table's topic (``partitions: N``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.cdc.base import SnapshotChunk
from sluice.cdc.events import Position, SnapshotRows, Source, TableSchema, encode, key_text
from sluice.cdc.partitions import split_rows

MESSAGE_ROWS = 5000
"""Most snapshot rows in one :class:`~sluice.cdc.events.SnapshotRows` message."""
MESSAGE_BYTES = 900_000
"""A :class:`~sluice.cdc.events.SnapshotRows` message larger than this is split in two (Kafka refuses
messages over 1 MB by default: ``message.max.bytes``)."""


def snapshot_messages(
    table: TableSchema, chunk: SnapshotChunk, position: Position, position_text: str
) -> list[tuple[str | None, bytes]]:
    """The bus messages of one snapshot chunk: :class:`SnapshotRows` of at most :data:`MESSAGE_ROWS` rows and
    about :data:`MESSAGE_BYTES` bytes each, keyed by their first row's key, every row at ``position`` (the one
    read before the snapshot began). A chunk of ``op="r"`` events is turned into rows first."""
    columns, rows, source = _chunk_rows(table, chunk)
    if not rows or source is None:
        return []
    if source.position != position:
        source = msgspec.structs.replace(source, position=position, position_text=position_text)
    key = [name for name in table.key if name in columns]
    at = [columns.index(name) for name in key]
    name, version = table.qualified, table.version
    out: list[tuple[str | None, bytes]] = []

    def add(part: list[list[Any]]) -> None:
        value = encode(SnapshotRows(name, source, columns, part, key, version))
        if len(value) > MESSAGE_BYTES and len(part) > 1:
            middle = len(part) // 2
            add(part[:middle])
            add(part[middle:])
            return
        out.append((key_text([part[0][i] for i in at]), value))

    for start in range(0, len(rows), MESSAGE_ROWS):
        add(rows[start : start + MESSAGE_ROWS])
    return out


def _chunk_rows(table: TableSchema, chunk: SnapshotChunk) -> tuple[list[str], list[list[Any]], Source | None]:
    """``(columns, rows, source)`` of a snapshot chunk in either form (value lists or ``op="r"`` events)."""
    if chunk.columns:
        return chunk.columns, chunk.rows, chunk.source
    columns = [column.name for column in table.columns]
    rows = [[(event.after or {}).get(name) for name in columns] for event in chunk.events]
    return columns, rows, chunk.events[0].source if chunk.events else None


def partitioned_snapshot_messages(
    table: TableSchema, chunk: SnapshotChunk, position: Position, position_text: str, partitions: int
) -> list[tuple[int, list[tuple[str | None, bytes]]]]:
    """:func:`snapshot_messages` per partition: the chunk's rows split by the partition of their key
    (:func:`~sluice.cdc.partitions.split_rows`), each part's messages with its partition number."""
    columns, rows, source = _chunk_rows(table, chunk)
    if not rows or source is None:
        return []
    key_at = [columns.index(name) for name in table.key if name in columns]
    out = []
    for p, part in sorted(split_rows(rows, key_at, partitions).items()):
        sub = SnapshotChunk(chunk.table, [], None, len(part), columns=columns, rows=part, source=source)
        out.append((p, snapshot_messages(table, sub, position, position_text)))
    return out
