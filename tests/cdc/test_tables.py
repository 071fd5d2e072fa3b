"""The table rules of a sync (sluice.cdc.tables): which source tables it copies, and each problem of its rules."""

from __future__ import annotations

import msgspec

from sluice.cdc.config import SyncSettings
from sluice.cdc.events import Column, TableSchema
from sluice.cdc.tables import resolve_tables

AVAILABLE = [TableSchema("shop", name, [Column("id", "int64")], ["id"]) for name in ("awk", "orders", "poison")]


def unmatched(*tables: str) -> list[str]:
    settings = msgspec.convert({"name": "s", "source": "my", "target": "pg", "tables": list(tables)}, SyncSettings)
    _, problems = resolve_tables(settings, AVAILABLE, "public")
    return [problem.message for problem in problems]


def test_an_entry_that_matches_nothing_suggests_the_closest_table() -> None:
    assert unmatched("awk", "awkk") == [
        "sync 's': tables entry 'awkk' matches no table of the source (tables: shop.awk, shop.orders, shop.poison); "
        "fix the name or pattern. Did you mean 'awk'?"
    ]
    assert unmatched("shop.order").pop().endswith("fix the name or pattern. Did you mean 'shop.orders'?")  # qualified


def test_an_entry_close_to_nothing_gets_no_suggestion() -> None:
    assert unmatched("invoices").pop().endswith("(tables: shop.awk, shop.orders, shop.poison); fix the name or pattern")


def test_a_rename_of_a_table_not_synced_says_what_to_do() -> None:
    settings = msgspec.convert(
        {"name": "s", "source": "my", "target": "pg", "tables": ["awk", "orders"], "rename": {"poison": "p2", "ordres": "o"}},
        SyncSettings,
    )
    _, problems = resolve_tables(settings, AVAILABLE, "public")
    assert [problem.message for problem in problems] == [
        "sync 's': rename names 'poison', which is not one of the synced tables (shop.awk, shop.orders); fix the name, "
        "add the table to tables:, or remove the entry",
        "sync 's': rename names 'ordres', which is not one of the synced tables (shop.awk, shop.orders); fix the name, "
        "add the table to tables:, or remove the entry. Did you mean 'orders'?",
    ]
