"""Cases both apply plugins must pass, run against a real target by test_pg_apply.py and test_mysql_apply.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from sluice.cdc.apply_base import SqlApply
from sluice.cdc.apply_common import same_value
from sluice.cdc.base import Conflict, SyncError, TableRef
from sluice.cdc.events import ChangeEvent, Column, SchemaChange, SnapshotRows, Source, TableSchema

BIG_DECIMAL = "12345678901234567890123456789012345.123456789012345678901234567890"
TYPES = [
    Column("id", "int64", nullable=False),
    Column("u64", "uint64"),
    Column("i8", "int8"),
    Column("u32", "uint32"),
    Column("dec", "decimal(65,30)"),
    Column("money", "decimal(12,2)"),
    Column("f64", "float64"),
    Column("f32", "float32"),
    Column("s", "string", length=64),
    Column("txt", "string"),
    Column("b", "bytes"),
    Column("dt", "datetime(6)"),
    Column("ts", "timestamp(6)"),
    Column("d", "date"),
    Column("tm", "time(6)"),
    Column("j", "json"),
    Column("e", "enum", labels=["small", "large"]),
    Column("st", "set", labels=["x", "y", "z"]),
    Column("bt", "bit(10)"),
    Column("b64", "bit(64)"),
    Column("y", "year"),
    Column("ok", "bool"),
]
FULL_ROW: dict[str, Any] = {
    "id": 1,
    "u64": 2**64 - 1,
    "i8": -128,
    "u32": 2**32 - 1,
    "dec": BIG_DECIMAL,
    "money": "-0.01",
    "f64": 1.5e300,
    "f32": 0.5,
    "s": "héllo 🎉 wörld",
    "txt": "🦀" * 1000,
    "b": b"\x00\xff\x10 '\\",
    "dt": "2024-02-29 23:59:59.123456",
    "ts": 1709251199123456,
    "d": "1999-12-31",
    "tm": "-838:59:59.000000",
    "j": '{"a": [1, 2.5, "é"], "b": null}',
    "e": "large",
    "st": "x,z",
    "bt": 1023,
    "b64": 2**64 - 1,
    "y": 2155,
    "ok": True,
}
OTHER_ROW: dict[str, Any] = {
    **{column.name: None for column in TYPES},
    "id": 2,
    "ts": -1_000_001,
    "tm": "123:45:06.500000",
    "dt": "1000-01-01 00:00:00",
    "money": "9999999999.99",
    "ok": False,
    "s": "",
}
NULL_ROW: dict[str, Any] = {**{column.name: None for column in TYPES}, "id": 3}


@dataclass
class Target:
    """One target under test: its apply, where its tables live, and a separate autocommit connection."""

    apply: SqlApply
    make_apply: Callable[[], SqlApply]
    namespace: str
    cdc_namespace: str
    query: Callable[[str], list[tuple[Any, ...]]]
    execute: Callable[[str], None]
    kill: Callable[[SqlApply], None]
    quote: Callable[[str], str]

    def rows(self, table: TableRef, columns: str = "*") -> list[tuple[Any, ...]]:
        return self.query(f"SELECT {columns} FROM {self.quote(self.namespace)}.{self.quote(table.target_name)} ORDER BY 1")

    def cdc(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        return self.query(f"SELECT {columns} FROM {self.quote(self.cdc_namespace)}.{table} ORDER BY id")


def ref(target: Target, name: str, columns: list[Column], key: list[str], **extra: Any) -> TableRef:
    return TableRef(TableSchema("src", name, columns, key), target.namespace, name, **extra)


_counter = [0]


def event(
    op: str,
    key: list[Any],
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    *,
    pos: int | None = None,
    table: str = "src.t",
    unchanged: list[str] | None = None,
) -> ChangeEvent:
    """A change event as capture would publish it; ``pos`` defaults to a counter (increasing)."""
    _counter[0] += 1
    position = [1, pos if pos is not None else _counter[0], 0]
    source = Source("mysql", "hr", position, f"bin.000001:{position[1]}", 1_700_000_000_000_000, snapshot=op == "r")
    return ChangeEvent(op, table, key, source, before, after, unchanged=unchanged or [])  # type: ignore[arg-type]


SIMPLE = [Column("id", "int64", nullable=False), Column("name", "string", length=20), Column("qty", "int32")]


def simple(target: Target, name: str = "t", **extra: Any) -> TableRef:
    table = ref(target, name, SIMPLE, ["id"], **extra)
    target.apply.prepare([table])
    return table


def row(i: int, name: str = "n", qty: int = 0) -> dict[str, Any]:
    return {"id": i, "name": f"{name}{i}", "qty": qty}


# ------------------------------------------------------------------------------------------------- cases


def case_types_round_trip(target: Target) -> None:
    table = ref(target, "types", TYPES, ["id"])
    target.apply.prepare([table])
    events = [event("c", [r["id"]], r, table="src.types") for r in (FULL_ROW, OTHER_ROW, NULL_ROW)]
    result = target.apply.apply_batch(table, events)
    assert result.applied == {"c": 3} and result.dead_letters == 0
    names = ", ".join(target.quote(column.name) for column in TYPES)
    got = target.rows(table, names)
    assert len(got) == 3
    for expected, found in zip((FULL_ROW, OTHER_ROW, NULL_ROW), got, strict=True):
        for column, value in zip(TYPES, found, strict=True):
            assert same_value(column.type, expected[column.name], value), (column.name, expected[column.name], value)
    u64, dec, s, txt, b = got[0][1], got[0][4], got[0][8], got[0][9], got[0][10]
    assert int(u64) == 2**64 - 1 and str(dec) == BIG_DECIMAL and s == FULL_ROW["s"] and txt == FULL_ROW["txt"]
    assert bytes(b) == FULL_ROW["b"]


def case_net_effect(target: Target) -> None:
    table = simple(target)
    batch = [
        event("c", [1], row(1)),
        event("c", [2], row(2)),
        event("c", [3], row(3)),
        event("u", [2], row(2, "x", 5), row(2)),
        event("d", [3], None, row(3)),
        event("u", [10], row(10, "moved"), row(1)),  # key change 1 -> 10
        event("c", [4], row(4)),
        event("d", [4], None, row(4)),  # insert then delete: nothing
    ]
    result = target.apply.apply_batch(table, batch)
    assert target.rows(table) == [(2, "x2", 5), (10, "moved10", 0)]
    assert result.applied.get("d", 0) >= 2
    later = [event("c", [1], row(1, "back")), event("u", [2], row(2, "y", 6), row(2, "x", 5))]
    target.apply.apply_batch(table, later)
    assert target.rows(table) == [(1, "back1", 0), (2, "y2", 6), (10, "moved10", 0)]


def case_truncate(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [9], row(9))])
    batch = [event("c", [1], row(1)), event("t", []), event("c", [2], row(2)), event("u", [2], row(2, "z"), row(2))]
    result = target.apply.apply_batch(table, batch)
    assert result.applied["t"] == 1
    assert target.rows(table) == [(2, "z2", 0)]


def case_unchanged_kept(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1, "big"))])
    update = event("u", [1], {"id": 1, "qty": 7}, {"id": 1}, unchanged=["name"])
    target.apply.apply_batch(table, [update, event("c", [2], row(2))])
    assert target.rows(table) == [(1, "big1", 7), (2, "n2", 0)]
    # an earlier image in the same batch fills the unchanged column
    batch = [event("u", [1], row(1, "new", 1), {"id": 1}), event("u", [1], {"id": 1, "qty": 8}, {"id": 1}, unchanged=["name"])]
    target.apply.apply_batch(table, batch)
    assert target.rows(table)[0] == (1, "new1", 8)


BIG = [Column("id", "int64", nullable=False), Column("big", "string", nullable=False), Column("qty", "int32")]


def big_table(target: Target) -> TableRef:
    """A table whose ``big`` (NOT NULL) stands for a TOASTed column: left out of updates that did not change it."""
    table = ref(target, "big", BIG, ["id"])
    target.apply.prepare([table])
    return table


def big(i: int, qty: int = 0) -> dict[str, Any]:
    return {"id": i, "big": f"big{i}" * 50, "qty": qty}


def moved(old: int, new: int, qty: int, whole: dict[str, Any] | None = None) -> ChangeEvent:
    """An update of key ``old`` to ``new`` that leaves ``big`` out (PostgreSQL's unchanged TOASTed value); the old
    image holds the key only (REPLICA IDENTITY DEFAULT) or ``whole`` (FULL)."""
    return event("u", [new], {"id": new, "qty": qty}, whole or {"id": old}, table="src.big", unchanged=["big"])


def case_key_change_keeps_unchanged_values(target: Target) -> None:
    """An update that changes the key and leaves a TOASTed column out gives the new key's row the old row's value."""
    table = big_table(target)
    target.apply.apply_batch(table, [event("c", [i], big(i), table="src.big") for i in (1, 2)])
    result = target.apply.apply_batch(table, [moved(1, 10, 7)])
    assert result.applied == {"u": 1, "d": 1} and result.dead_letters == 0
    assert target.rows(table) == [(2, big(2)["big"], 0), (10, big(1)["big"], 7)]


def case_unchanged_kept_in_a_not_null_column(target: Target) -> None:
    """An update that leaves a NOT NULL TOASTed column out keeps its value (MySQL strict mode refuses an insert
    without it even when the key exists); a key the target lacks gets NULL, refused: a dead letter."""
    table = big_table(target)
    target.apply.apply_batch(table, [event("c", [1], big(1), table="src.big")])
    update = event("u", [1], {"id": 1, "qty": 7}, {"id": 1}, table="src.big", unchanged=["big"])
    absent = event("u", [2], {"id": 2, "qty": 8}, {"id": 2}, table="src.big", unchanged=["big"])
    result = target.apply.apply_batch(table, [update, absent])
    assert result.applied == {"u": 1} and result.dead_letters == 1
    assert target.rows(table) == [(1, big(1)["big"], 7)]


def case_key_change_chains_keep_unchanged_values(target: Target) -> None:
    """Chains in one batch: a key changed twice, then updated, onto a key that exists, then deleted, keys swapped
    through a third, a key changed and back; every unchanged value comes from the chain's first row."""
    table = big_table(target)
    first = [event("c", [i], big(i), table="src.big") for i in (1, 2, 3, 4, 5, 6, 7, 8, 50, 60)]
    target.apply.apply_batch(table, first)
    batch = [
        moved(1, 10, 1),
        moved(10, 20, 2),  # twice: 1 -> 10 -> 20
        moved(2, 30, 1),
        event("u", [30], {"id": 30, "qty": 3}, {"id": 30}, table="src.big", unchanged=["big"]),  # then updated
        event("d", [50], None, {"id": 50}, table="src.big"),
        moved(3, 50, 4),  # onto a key deleted earlier in the batch
        moved(4, 60, 5),  # onto a key the target has (stale)
        moved(5, 70, 6),
        event("d", [70], None, {"id": 70}, table="src.big"),  # then deleted
        moved(6, 99, 7),
        moved(7, 6, 7),
        moved(99, 7, 7),  # 6 and 7 swapped through 99
        moved(8, 80, 8),
        moved(80, 8, 9),  # and back
    ]
    result = target.apply.apply_batch(table, batch)
    assert result.dead_letters == 0
    found = {r[0]: (r[1], r[2]) for r in target.rows(table)}
    assert found == {
        20: (big(1)["big"], 2),
        30: (big(2)["big"], 3),
        50: (big(3)["big"], 4),
        60: (big(4)["big"], 5),
        6: (big(7)["big"], 7),
        7: (big(6)["big"], 7),
        8: (big(8)["big"], 9),
    }


def case_key_change_of_a_row_the_target_lacks(target: Target) -> None:
    """The old row of a key change is not in the target: its unchanged values are unknown, so the change goes to
    the dead letters (not a row with NULL in them); a whole old image (REPLICA IDENTITY FULL) supplies them."""
    table = big_table(target)
    target.apply.apply_batch(table, [event("c", [1], big(1), table="src.big")])
    target.execute(f"UPDATE {target.quote(target.namespace)}.{target.quote('big')} SET big = 'target' WHERE id = 1")
    batch = [
        moved(5, 50, 1),
        moved(1, 10, 2, {**big(1), "big": "full"}),
        moved(6, 60, 3, big(6)),
        event("c", [2], big(2), table="src.big"),
    ]
    result = target.apply.apply_batch(table, batch)
    assert result.dead_letters == 1 and result.applied == {"u": 2, "c": 1, "d": 3}
    assert target.rows(table) == [(2, big(2)["big"], 0), (10, "full", 2), (60, big(6)["big"], 3)]
    letters = target.cdc("dead_letters", "table_name, op, reason")
    assert [(r[0], r[1]) for r in letters] == [("src.big", "u")]
    assert "old key [5]" in letters[0][2] and "big" in letters[0][2] and "resync" in letters[0][2]


def case_redelivery(target: Target) -> None:
    table = simple(target)
    batch = [event("c", [1], row(1)), event("c", [2], row(2)), event("u", [1], row(1, "u"), row(1))]
    first = target.apply.apply_batch(table, batch)
    assert first.skipped == 0
    position, _, done = target.apply.stored_position(table)
    assert position == batch[-1].source.position and done
    target.execute(f"UPDATE {target.quote(target.namespace)}.{target.quote('t')} SET qty = 99 WHERE id = 2")
    again = target.apply.apply_batch(table, batch)
    assert again.skipped == 3 and again.applied == {}
    assert target.rows(table) == [(1, "u1", 0), (2, "n2", 99)]
    # snapshot reads always apply and move the snapshot key
    snap = target.apply.apply_batch(table, [event("r", [2], row(2, "snap"), pos=0)])
    assert snap.applied == {"r": 1}
    assert target.apply.stored_position(table)[1] == [2]
    assert target.rows(table)[1] == (2, "snap2", 0)


def case_dead_letters(target: Target, constraint: str) -> None:
    table = simple(target)
    target.execute(constraint)  # qty must be >= 0
    batch = [event("c", [i], row(i, qty=-1 if i in (3, 7) else i)) for i in range(10)]
    result = target.apply.apply_batch(table, batch)
    assert result.dead_letters == 2 and result.applied == {"c": 8}
    assert [r[0] for r in target.rows(table)] == [0, 1, 2, 4, 5, 6, 8, 9]
    letters = target.cdc("dead_letters", "table_name, op, reason")
    assert [(r[0], r[1]) for r in letters] == [("src.t", "c"), ("src.t", "c")]
    assert all("qty" in r[2] or "check" in r[2].lower() for r in letters)
    assert target.apply.stored_position(table)[0] == batch[-1].source.position


def case_not_null_dead_letter(target: Target) -> None:
    columns = [Column("id", "int64", nullable=False), Column("name", "string", nullable=False, length=5)]
    table = ref(target, "nn", columns, ["id"])
    target.apply.prepare([table])
    batch = [
        event("c", [1], {"id": 1, "name": "ok"}, table="src.nn"),
        event("c", [2], {"id": 2, "name": None}, table="src.nn"),
        event("c", [3], {"id": 3, "name": "too long"}, table="src.nn"),
    ]
    result = target.apply.apply_batch(table, batch)
    assert result.dead_letters == 2 and target.rows(table) == [(1, "ok")]


def case_conflicts(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1)), event("c", [2], row(2)), event("c", [3], row(3))])
    target.execute(f"UPDATE {target.quote(target.namespace)}.{target.quote('t')} SET qty = 50 WHERE id IN (1, 2)")
    seen: list[Conflict] = []

    def resolver(conflicts: list[Conflict]) -> list[bool]:
        seen.extend(conflicts)
        return [c.event.key == [2] for c in conflicts]  # key 2: the incoming change wins, key 1: target wins

    batch = [
        event("u", [1], row(1, "a", 1), row(1)),  # target has qty 50: conflict, dropped
        event("u", [2], row(2, "b", 1), row(2)),  # conflict, applied
        event("u", [3], row(3, "c", 1), row(3)),  # before matches: no conflict
        event("c", [4], row(4)),  # new key: no conflict
    ]
    result = target.apply.apply_batch(table, batch, resolver)
    assert result.conflicts == 2 and sorted(c.event.key[0] for c in seen) == [1, 2]
    current = {c.event.key[0]: c.current for c in seen}
    assert current[1] is not None and int(current[1]["qty"]) == 50
    assert target.rows(table) == [(1, "n1", 50), (2, "b2", 1), (3, "c3", 1), (4, "n4", 0)]
    recorded = target.cdc("conflicts", "applied")
    assert sorted(bool(r[0]) for r in recorded) == [False, True]


def case_conflicts_decide_each_change_of_a_key(target: Target) -> None:
    """A key's changes meet the target row one by one: a lost change drops itself, not the key's later ones
    (a later version may win where an earlier one lost), and a change taken makes the rest follow it."""
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1)), event("c", [2], row(2))])
    target.execute(f"UPDATE {target.quote(target.namespace)}.{target.quote('t')} SET qty = 50")  # both keys changed here
    seen: list[ChangeEvent] = []

    def resolver(conflicts: list[Conflict]) -> list[bool]:
        seen.extend(c.event for c in conflicts)
        return [c.event.after is not None and c.event.after["qty"] >= 2 for c in conflicts]  # from the 2nd version on

    batch = [
        event("u", [1], row(1, "a", 1), row(1)),  # conflict, lost
        event("u", [2], row(2, "a", 1), row(2)),  # conflict, lost
        event("u", [1], row(1, "b", 2), row(1, "a", 1)),  # conflict with the same target row again, won
        event("u", [1], row(1, "c", 3), row(1, "b", 2)),  # follows the change taken: no conflict
        event("u", [2], row(2, "b", 2), row(2, "a", 1)),  # conflict, won
    ]
    result = target.apply.apply_batch(table, batch, resolver)
    assert [(e.key[0], e.after["qty"] if e.after else None) for e in seen] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    assert result.conflicts == 4
    assert target.rows(table) == [(1, "c1", 3), (2, "b2", 2)]


def case_schema_changes(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])

    def change(columns: list[Column], kind: str, renamed: dict[str, str] | None = None) -> SchemaChange:
        schema = TableSchema("src", "t", columns, ["id"], version=2)
        return SchemaChange("src.t", schema, kind, event("c", [0]).source, renamed=renamed or {})

    added = [*SIMPLE, Column("note", "string")]
    target.apply.apply_schema(table, change(added, "add_column"))
    table = TableRef(TableSchema("src", "t", added, ["id"]), target.namespace, "t")
    widened = [
        Column("id", "int64", nullable=False),
        Column("name", "string", length=200),
        Column("qty", "int64"),
        Column("note", "string"),
    ]
    target.apply.apply_schema(table, change(widened, "alter_column"))
    table = TableRef(TableSchema("src", "t", widened, ["id"]), target.namespace, "t")
    target.apply.apply_batch(table, [event("c", [2], {"id": 2, "name": "x" * 150, "qty": 2**40, "note": "hi"})])
    renamed = [widened[0], Column("label", "string", length=200), widened[2], widened[3]]
    target.apply.apply_schema(table, change(renamed, "rename_column", {"name": "label"}))
    table = TableRef(TableSchema("src", "t", renamed, ["id"]), target.namespace, "t")
    dropped = renamed[:3]
    target.apply.apply_schema(table, change(dropped, "drop_column"))
    target.apply.apply_schema(table, change(dropped, "drop_column"))  # redelivered: nothing to do
    table = TableRef(TableSchema("src", "t", dropped, ["id"]), target.namespace, "t")
    assert target.rows(table) == [(1, "n1", 0), (2, "x" * 150, 2**40)]
    narrowed = [dropped[0], dropped[1], Column("qty", "int16")]
    with pytest.raises(SyncError, match=r"qty.*int64.*int16.*sluice sync resync PATH src\.t") as caught:
        target.apply.apply_schema(table, change(narrowed, "alter_column"))
    assert caught.value.table == f"{target.namespace}.t"
    kept = TableRef(table.source, target.namespace, "t", drop_columns="keep")
    target.apply.apply_schema(kept, change(dropped[:2], "drop_column"))
    assert target.rows(table) == [(1, "n1", 0), (2, "x" * 150, 2**40)]


def case_narrowing_a_length_or_labels_stops_the_table(target: Target) -> None:
    """A string's length and an ENUM's labels are not part of the logical type: ``VARCHAR(50) -> VARCHAR(20)``
    and a label removed must stop the table (no truncating ``ALTER``), while longer strings and labels added
    at the end still widen in place."""
    start = [
        Column("id", "int64", nullable=False),
        Column("name", "string", source_type="varchar(50)", length=50),
        Column("kind", "enum", source_type="enum('a','b')", labels=["a", "b"]),
    ]
    table = ref(target, "narrow", start, ["id"])
    target.apply.prepare([table])
    long_name = "x" * 45
    target.apply.apply_batch(table, [event("c", [1], {"id": 1, "name": long_name, "kind": "b"}, table="src.narrow")])

    def change(columns: list[Column]) -> SchemaChange:
        schema = TableSchema("src", "narrow", columns, ["id"], version=2)
        return SchemaChange("src.narrow", schema, "alter_column", event("c", [0], table="src.narrow").source)

    shorter = [start[0], Column("name", "string", source_type="varchar(20)", length=20), start[2]]
    with pytest.raises(SyncError, match=r"column name from varchar\(50\) to varchar\(20\).*sluice sync resync PATH src\.narrow"):
        target.apply.apply_schema(table, change(shorter))
    fewer = [start[0], start[1], Column("kind", "enum", source_type="enum('b')", labels=["b"])]
    with pytest.raises(SyncError, match=r"column kind from enum\('a','b'\) to enum\('b'\)"):
        target.apply.apply_schema(table, change(fewer))
    assert target.rows(table, "id, name") == [(1, long_name)]  # nothing truncated
    wider = [
        start[0],
        Column("name", "string", source_type="varchar(80)", length=80),
        Column("kind", "enum", source_type="enum('a','b','c')", labels=["a", "b", "c"]),
    ]
    target.apply.apply_schema(table, change(wider))
    table = TableRef(TableSchema("src", "narrow", wider, ["id"]), target.namespace, "narrow")
    target.apply.apply_batch(table, [event("c", [2], {"id": 2, "name": "y" * 80, "kind": "c"}, table="src.narrow")])
    assert target.rows(table, "id, name") == [(1, long_name), (2, "y" * 80)]


def case_added_column_with_a_default_fills_existing_rows(target: Target) -> None:
    """``ADD COLUMN prio INT NOT NULL DEFAULT 5``: the source logs no row change for its existing rows, so the
    target column must be added with the default (and NOT NULL) for the rows already there to match."""
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1)), event("c", [2], row(2))])
    added = [
        *SIMPLE,
        Column("prio", "int32", nullable=False, default=5),
        Column("tag", "string", length=20, default="it's \\ new"),
        Column("price", "decimal(8,2)", default="-1.50"),
        Column("ok", "bool", default=True),
        Column("bits", "bit(4)", default=5),
        Column("plain", "int32"),
    ]
    schema = TableSchema("src", "t", added, ["id"], version=2)
    target.apply.apply_schema(table, SchemaChange("src.t", schema, "add_column", event("c", [0]).source))
    table = TableRef(schema, target.namespace, "t")
    rows = target.rows(table, "id, prio, tag, price, ok, bits, plain")
    bits = rows[0][5]
    assert [(r[0], r[1], r[2], str(r[3]), bool(r[4]), r[6]) for r in rows] == [
        (1, 5, "it's \\ new", "-1.50", True, None),
        (2, 5, "it's \\ new", "-1.50", True, None),
    ]
    assert bits in ("0101", b"\x05", 5), bits
    with pytest.raises(Exception, match=r"(?i)null"):  # the source's NOT NULL holds in the target too
        target.execute(f"INSERT INTO {target.quote(target.namespace)}.t (id, prio) VALUES (9, NULL)")
    target.apply.apply_batch(table, [event("c", [3], {**row(3), "prio": 7, "tag": "x", "price": "2.00", "ok": False, "bits": 1})])
    assert [r[1] for r in target.rows(table, "id, prio")] == [5, 5, 7]


def case_schema_changes_made_while_stopped(target: Target) -> None:
    """DDL made while the sync was stopped: the source schema read at start (``table.source``) already has it,
    so apply must compare the change with the target's own columns."""
    simple(target)
    target.apply.apply_batch(simple(target), [event("c", [1], row(1, qty=7))])
    now = [Column("id", "int64", nullable=False), Column("label", "string", length=200), Column("note", "string")]
    table = TableRef(TableSchema("src", "t", now, ["id"], version=2), target.namespace, "t")
    change = SchemaChange("src.t", table.source, "rename_column", event("c", [0]).source, renamed={"name": "label"})
    target.apply.apply_schema(table, change)
    target.apply.apply_schema(table, change)  # redelivered: nothing to do
    target.apply.apply_batch(table, [event("c", [2], {"id": 2, "label": "x" * 150, "note": "hi"})])
    assert target.rows(table) == [(1, "n1", None), (2, "x" * 150, "hi")]  # renamed, widened, added; qty dropped
    as_int = [now[0], Column("label", "int64"), now[2]]
    table = TableRef(TableSchema("src", "t", as_int, ["id"], version=3), target.namespace, "t")
    with pytest.raises(SyncError, match=r"table src\.t: the target refused schema change") as caught:
        target.apply.apply_schema(table, SchemaChange("src.t", table.source, "alter_column", event("c", [0]).source))
    assert caught.value.table == "src.t"
    target.apply.apply_batch(table, [event("d", [2], before={"id": 2})])  # the connection is usable again


def case_crash_mid_batch(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])
    before_position = target.apply.stored_position(table)
    apply = target.apply
    original = apply._upsert

    def upsert_then_die(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        target.kill(apply)

    apply._upsert = upsert_then_die  # type: ignore[method-assign]
    batch = [event("c", [i], row(i, "crash")) for i in range(1, 50)]
    with pytest.raises(Exception):  # noqa: B017 - the driver's connection-lost error
        apply.apply_batch(table, batch)
    fresh = target.make_apply()
    try:
        assert fresh.stored_position(table) == before_position
        assert target.rows(table) == [(1, "n1", 0)]
        fresh.apply_batch(table, batch)  # redelivered after the crash: applied once
        assert len(target.rows(table)) == 49
    finally:
        fresh.close()


def case_no_key(target: Target) -> None:
    columns = [Column("a", "int32"), Column("b", "string", length=10)]
    refused = ref(target, "nokey", columns, [])
    with pytest.raises(SyncError, match="no primary key"):
        target.apply.prepare([refused])
    insert_only = ref(target, "nokey", columns, [], no_key="insert-only")
    target.apply.prepare([insert_only])
    result = target.apply.apply_batch(
        insert_only,
        [
            event("c", [], {"a": 1, "b": "x"}, table="src.nokey"),
            event("u", [], {"a": 1, "b": "y"}, {"a": 1, "b": "x"}, table="src.nokey"),
        ],
    )
    assert result.applied == {"c": 1} and result.dead_letters == 1
    full = ref(target, "nokey", columns, [], no_key="full-row")
    batch = [
        event("c", [], {"a": 1, "b": "x"}, table="src.nokey"),  # now two identical rows
        event("u", [], {"a": 2, "b": "x"}, {"a": 1, "b": "x"}, table="src.nokey"),  # changes one of them
        event("c", [], {"a": 3, "b": None}, table="src.nokey"),
        event("d", [], None, {"a": 3, "b": None}, table="src.nokey"),
    ]
    target.apply.apply_batch(full, batch)
    assert target.rows(full) == [(1, "x"), (2, "x")]


def case_reset(target: Target) -> None:
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])
    target.apply.reset(table)
    assert target.rows(table) == [] and target.apply.stored_position(table) == (None, None, False)


def case_resync_gives_the_target_the_sources_new_key(target: Target) -> None:
    """A primary key changed at the source: the resync's reset leaves no old key behind (it refused every
    upsert by the new key), and narrows a type in the emptied table."""
    from sluice.cdc.apply_partitioned import RESYNC, reset_target

    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1, qty=5))])
    columns = [SIMPLE[0], Column("name", "string", length=10), Column("qty", "int32", nullable=False)]
    new = TableRef(TableSchema("src", "t", columns, ["id", "qty"], version=2), target.namespace, "t")
    reset_target(target.apply, new, SchemaChange("src.t", new.source, RESYNC, event("c", [0]).source))
    assert target.apply._target_key(new) == ["id", "qty"]
    target.apply.apply_batch(new, [event("c", [1, 5], row(1, qty=5)), event("c", [1, 6], row(1, qty=6))])
    assert target.rows(new) == [(1, "n1", 5), (1, "n1", 6)]
    reset_target(target.apply, new, SchemaChange("src.t", new.source, RESYNC, event("c", [0]).source))  # same key
    assert target.apply._target_key(new) == ["id", "qty"] and target.rows(new) == []


def case_target_table_that_does_not_fit_stops_that_table(target: Target) -> None:
    """The target table's definition refusing a batch (here a column dropped by hand) is a SyncError naming
    the table, so apply stops that table only, not the sync; the connection is usable again."""
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])
    target.execute(f"ALTER TABLE {target.quote(target.namespace)}.{target.quote('t')} DROP COLUMN qty")
    for run in (
        lambda: target.apply.apply_batch(table, [event("u", [1], row(1, qty=2), row(1))]),
        lambda: target.apply.apply_rows(table, [snapshot_rows([row(2, qty=1)])]),
    ):
        refused = r"table src\.t: the target table .* refused the changes .*sluice sync resync"
        with pytest.raises(SyncError, match=refused) as caught:
            run()
        assert caught.value.table == "src.t" and "\n" not in str(caught.value)
    assert target.rows(table, "id, name") == [(1, "n1")]


def snapshot_rows(rows: list[dict[str, Any]]) -> SnapshotRows:
    """Snapshot rows of ``src.t`` as capture publishes them."""
    source = event("r", [0]).source  # read after every change made so far: not skipped as a repeat
    names = [c.name for c in SIMPLE]
    return SnapshotRows("src.t", source, names, [[r[n] for n in names] for r in rows], ["id"])


def case_masking(target: Target) -> None:
    table = simple(target, mask=("name",), drop=("qty",))
    target.apply.apply_batch(table, [event("c", [1], row(1, "secret")), event("c", [2], {"id": 2, "name": None, "qty": 1})])
    import hashlib

    assert target.rows(table) == [(1, hashlib.sha256(b"secret1").hexdigest()), (2, None)]


CASES = {
    name.removeprefix("case_"): function
    for name, function in globals().items()
    if name.startswith("case_") and name not in ("case_dead_letters",)
}
