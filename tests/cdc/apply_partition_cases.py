"""Positions per partition and the barrier of table-wide events (:mod:`sluice.cdc.apply_positions`): cases both
apply plugins must pass, run against a real target by test_pg_apply.py and test_mysql_apply.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cdc.apply_cases import SIMPLE, Target, event, row, simple
from sluice.cdc.base import SyncError, TableRef
from sluice.cdc.events import Column, SchemaChange, TableSchema


def case_pkeys_old_positions_table_becomes_partition_0(target: Target, old_layout: list[str]) -> None:
    """A positions table made before partitions (``old_layout``: the statements that made it): prepare adds the
    partition (its rows are partition 0's) and apply goes on, skipping what the stored position covers."""
    for statement in old_layout:
        target.execute(statement)
    ns = f"{target.quote(target.cdc_namespace)}.positions"
    target.execute(
        f"INSERT INTO {ns} (sync, side, table_name, position, snapshot_done, updated_at)"
        " VALUES ('employees', 'warehouse', 'src.t', '[1, 50, 0]', true, CURRENT_TIMESTAMP)"
    )
    table = simple(target)  # prepare()
    assert target.apply.stored_position(table) == ([1, 50, 0], None, True)
    old, new = event("c", [1], row(1), pos=10), event("c", [2], row(2), pos=60)
    result = target.apply.apply_batch(table, [old, new])
    assert result.skipped == 1 and result.applied == {"c": 1}
    assert target.rows(table) == [(2, "n2", 0)]
    assert target.query(f"SELECT bus_partition, position FROM {ns}") == [(0, "[1,60,0]")]
    assert target.apply.stored_position_text(table) == "bin.000001:60"  # the column prepare added
    simple(target)  # prepare() again: nothing left to alter


def case_pkeys_positions_per_partition(target: Target) -> None:
    """Each partition skips what its own position covers; stored_position gives the least of them."""
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1), pos=100)], partition=1)
    target.apply.apply_batch(table, [event("c", [2], row(2), pos=50)], partition=2)
    assert target.apply.stored_position(table)[0] == [1, 50, 0]
    assert target.apply.stored_position_text(table) == "bin.000001:50"  # the least partition's, as the source shows it
    late = target.apply.apply_batch(table, [event("u", [2], row(2, "later"), row(2), pos=60)], partition=2)
    covered = target.apply.apply_batch(table, [event("u", [1], row(1, "old"), row(1), pos=60)], partition=1)
    assert late.applied == {"u": 1} and covered.skipped == 1
    assert target.rows(table) == [(1, "n1", 0), (2, "later2", 0)]
    assert target.apply.stored_position(table)[0] == [1, 60, 0]
    assert target.apply.stored_position_text(table) == "bin.000001:60"


def case_pkeys_barrier_applies_once(target: Target) -> None:
    """The table-wide event applies when every partition arrived, by one apply only, and is then done for all;
    the table's own row survives a reset (a resync marker's barrier)."""
    table = simple(target)
    other = target.make_apply()
    barrier = "bin.000001:99#0123456789abcdef"
    assert target.apply.arrive(table, barrier, 0, 3) == ("waiting", "")
    assert other.arrive(table, barrier, 2, 3) == ("waiting", "")
    assert target.apply.arrive(table, barrier, 1, 3) == ("ready", "")
    ran: list[str] = []
    other._try_lock(f"sluice_cdc:employees:warehouse:{table.source.qualified}")  # another process applies it now
    assert target.apply.apply_once(table, barrier, lambda: ran.append("first")) is None
    other._unlock(f"sluice_cdc:employees:warehouse:{table.source.qualified}")
    assert target.apply.apply_once(table, barrier, lambda: ran.append("first")) is True
    assert other.apply_once(table, barrier, lambda: ran.append("second")) is False
    assert ran == ["first"]
    target.apply.reset(table)
    assert other.arrive(table, barrier, 2, 3) == ("done", "")
    assert target.apply.arrive(table, "bin.000001:120#fedcba9876543210", 0, 3) == ("waiting", "")


def case_pkeys_barrier_failure_is_recorded(target: Target) -> None:
    """A failed table-wide event is recorded with its error, so the partitions waiting elsewhere stop too."""
    table = simple(target)
    barrier = "bin.000001:99#00000000000000aa"
    for partition in range(2):
        target.apply.arrive(table, barrier, partition, 2)

    def refuse() -> None:
        raise SyncError("table src.t: the target refused it", table="src.t")

    with pytest.raises(SyncError, match="refused"):
        target.apply.apply_once(table, barrier, refuse)
    assert target.make_apply().arrive(table, barrier, 1, 2) == ("failed", "table src.t: the target refused it")
    assert target.apply.apply_once(table, barrier, lambda: None) is True  # tried again (a restart): done
    assert target.apply.arrive(table, barrier, 0, 2) == ("done", "")


def case_pkeys_changes_made_before_a_column_was_added(target: Target) -> None:
    """An apply that starts after a column was added at the source takes the new schema, then replays changes
    made before the column existed (an apply process joining while another partition waits at the DDL, or a
    restart): those write the columns they have, until the schema change adds the column."""
    simple(target)
    schema = TableSchema("src", "t", [*SIMPLE, Column("added", "int32", default=5)], ["id"], version=2)
    now = TableRef(schema, target.namespace, "t")
    result = target.apply.apply_batch(now, [event("c", [1], row(1)), event("u", [1], row(1, "u"), row(1))])
    assert result.dead_letters == 0 and target.rows(now) == [(1, "u1", 0)]
    target.apply.apply_schema(now, SchemaChange("src.t", now.source, "add_column", event("c", [0]).source))
    target.apply.apply_batch(now, [event("c", [2], {**row(2), "added": 9})])
    assert target.rows(now) == [(1, "u1", 0, 5), (2, "n2", 0, 9)]


CASES: dict[str, Callable[[Target], None]] = {
    name.removeprefix("case_"): function
    for name, function in globals().items()
    if name.startswith("case_pkeys_") and name != "case_pkeys_old_positions_table_becomes_partition_0"
}
