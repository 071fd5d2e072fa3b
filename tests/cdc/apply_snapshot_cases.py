"""Snapshot-row cases (:meth:`SqlApply.apply_rows`) both apply plugins must pass, run by test_pg_apply.py and
test_mysql_apply.py against a real target."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cdc.apply_cases import FULL_ROW, NULL_ROW, OTHER_ROW, SIMPLE, TYPES, Target, event, ref, simple
from sluice.cdc.apply_common import same_value
from sluice.cdc.base import TableRef
from sluice.cdc.events import Column, SnapshotRows, Source

SOURCE = Source("mysql", "hr", [1, 4, 0], "bin.000001:4", 1_700_000_000_000_000, snapshot=True)


def rows_message(table: TableRef, rows: list[dict[str, Any]], columns: list[Column] | None = None) -> SnapshotRows:
    """A :class:`SnapshotRows` of ``rows`` (dicts) as capture would publish it."""
    names = [column.name for column in columns or table.source.columns]
    values = [[row.get(name) for name in names] for row in rows]
    return SnapshotRows(table.source.qualified, SOURCE, names, values, list(table.source.key))


def case_rows_types_round_trip(target: Target) -> None:
    """Every logical type reads back the same through the bulk path as through change events."""
    table = ref(target, "types", TYPES, ["id"])
    target.apply.prepare([table])
    result = target.apply.apply_rows(table, [rows_message(table, [FULL_ROW, OTHER_ROW]), rows_message(table, [NULL_ROW])])
    assert result.applied == {"r": 3} and result.dead_letters == 0
    names = ", ".join(target.quote(column.name) for column in TYPES)
    got = target.rows(table, names)
    for expected, found in zip((FULL_ROW, OTHER_ROW, NULL_ROW), got, strict=True):
        for column, value in zip(TYPES, found, strict=True):
            assert same_value(column.type, expected[column.name], value), (column.name, expected[column.name], value)
    assert target.apply.stored_position(table) == (None, [3], False)


def case_rows_upsert_mask_drop_and_dead_letters(target: Target) -> None:
    """Rows already there are updated, masked/dropped columns handled, a refused row dead-lettered alone."""
    table = simple(target, mask=("name",), drop=("qty",))
    # A change read before the snapshot's position (the rows are newer): the rows update it.
    target.apply.apply_batch(table, [event("c", [2], {"id": 2, "name": "old", "qty": 0}, pos=1)])
    target.execute(f"ALTER TABLE {target.quote(target.namespace)}.{target.quote('t')} ADD CONSTRAINT small CHECK (id < 100)")
    first = rows_message(table, [{"id": i, "name": f"s{i}", "qty": i} for i in (1, 2, 3)])
    second = rows_message(table, [{"id": 4, "name": None, "qty": 4}, {"id": 100, "name": "big", "qty": 0}, {"id": 5}])
    result = target.apply.apply_rows(table, [first, second])
    assert result.applied == {"r": 5} and result.dead_letters == 1
    masked = {i: hashlib.sha256(f"s{i}".encode()).hexdigest() for i in (1, 2, 3)}
    assert target.rows(table) == [(1, masked[1]), (2, masked[2]), (3, masked[3]), (4, None), (5, None)]
    letters = target.cdc("dead_letters", "table_name, op, " + target.quote("key"))
    assert [(r[0], r[1]) for r in letters] == [("src.t", "r")] and "100" in str(letters[0][2])
    assert target.apply.stored_position(table)[1] == [5]


def case_rows_after_stream_position_keep_it(target: Target) -> None:
    """Snapshot rows leave the stored stream position alone and apply again when delivered twice (idempotent
    upserts); rows read before a stream change the partition already applied are a delivery again after a crash
    between the target's commit and the bus's: skipped, or they would undo that change."""
    table = ref(target, "t", SIMPLE, ["id"])
    target.apply.prepare([table])
    message = rows_message(table, [{"id": 1, "name": "a", "qty": 1}, {"id": 9, "name": "old", "qty": 0}])
    target.apply.apply_rows(table, [message])
    target.apply.apply_rows(table, [message])  # delivered twice
    change = event("u", [9], {"id": 9, "name": "x", "qty": 1}, pos=100)  # after the snapshot's position [1, 4, 0]
    target.apply.apply_batch(table, [change])
    result = target.apply.apply_rows(table, [message])  # again, after the change: a redelivery
    assert result.skipped == 2 and not result.applied
    assert target.rows(table) == [(1, "a", 1), (9, "x", 1)]
    assert target.apply.stored_position(table)[:2] == (change.source.position, [9])


CASES: dict[str, Callable[[Target], None]] = {
    name.removeprefix("case_"): function for name, function in globals().items() if name.startswith("case_")
}
