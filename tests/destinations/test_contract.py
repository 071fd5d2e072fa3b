"""The Destination contract, run over every implementation (DuckDB, PostgreSQL, SQLite).

A :class:`Backend` bundles a destination URL with a way to read tables back with the database's own
driver, so the tests check what really landed rather than what the destination says it wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sluice.destinations.base import Destination
from sluice.destinations.registry import open_destination
from sluice.destinations.sql import LOADS_TABLE, TableName, quote
from sluice.errors import TerminalError
from sluice.project.model import ConnectionSpec, Origin


@dataclass
class Backend:
    name: str
    url: str
    root: Path
    opened: list[Destination] = field(default_factory=list)

    def destination(self) -> Destination:
        """A new destination on the backend's database, as another worker would open it."""
        dest = open_destination(ConnectionSpec("dest", self.url, Origin("sluice.yaml", 3)), self.root)
        self.opened.append(dest)
        return dest

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql``, read with the database's own driver."""
        if self.name == "postgresql":
            import psycopg

            with psycopg.connect(self.url) as conn:
                return conn.execute(sql).fetchall()
        path = self.root / self.url.split(":///", 1)[1]
        if self.name == "duckdb":
            import duckdb

            with duckdb.connect(str(path)) as conn:
                return [tuple(row.values()) for row in conn.sql(sql).to_arrow_table().to_pylist()]
        with sqlite3.connect(path) as conn:
            return conn.execute(sql).fetchall()

    def rows(self, table: str, order_by: str = "id") -> list[tuple[Any, ...]]:
        return self.query(f"SELECT * FROM {TableName.parse(table).sql} ORDER BY {order_by}")

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {TableName.parse(table).sql}")[0][0])

    def exists(self, table: str) -> bool:
        name = TableName.parse(table)
        if self.name == "sqlite":
            found = self.query(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{name.name}'")
        else:
            schema = name.schema or ("public" if self.name == "postgresql" else "main")
            found = self.query(
                f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}' AND table_name = '{name.name}'"
            )
        return int(found[0][0]) > 0

    def stored(self, value: Any) -> Any:
        """How a Python value comes back (SQLite keeps timestamps, dates and decimals as text, booleans as 0/1)."""
        if self.name != "sqlite" or value is None:
            return value
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                utc = value.astimezone(dt.UTC).replace(tzinfo=None)
                return utc.isoformat(sep=" ", timespec="microseconds") + "+00:00"
            return value.isoformat(sep=" ", timespec="microseconds")
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, bool):
            return int(value)
        return value


URLS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "duckdb": lambda request: "duckdb:///db/dest.duckdb",
    "postgresql": lambda request: str(request.getfixturevalue("pg_db_url")),
    "sqlite": lambda request: "sqlite:///db/dest.db",
}


@pytest.fixture(
    params=[pytest.param(name, marks=pytest.mark.postgres) if name == "postgresql" else name for name in sorted(URLS)]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    harness = Backend(request.param, URLS[request.param](request), tmp_path)
    yield harness
    for dest in harness.opened:
        dest.close()


@pytest.fixture
def dest(backend: Backend) -> Destination:
    return backend.destination()


def users(ids: list[int], names: list[str | None], scores: list[float | None] | None = None) -> pa.Table:
    scores = scores if scores is not None else [float(i) / 2 for i in ids]
    return pa.table(
        {"id": pa.array(ids, pa.int64()), "name": pa.array(names, pa.string()), "score": pa.array(scores, pa.float64())}
    )


def reader_of(*tables: pa.Table, schema: pa.Schema | None = None) -> pa.RecordBatchReader:
    batches = [batch for table in tables for batch in table.to_batches()]
    return pa.RecordBatchReader.from_batches(schema or tables[0].schema, batches)


# -- append ---------------------------------------------------------------------------------------------


def test_append_creates_the_table_and_adds_rows(backend: Backend, dest: Destination) -> None:
    assert dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "append", [], "run-1:1") == 2
    assert dest.write("users", reader_of(users([3], ["cy"])), "append", [], "run-1:2") == 1
    assert backend.rows("users") == [(1, "ann", 0.5), (2, "bob", 1.0), (3, "cy", 1.5)]


def test_append_of_a_recorded_load_id_does_nothing(backend: Backend, dest: Destination) -> None:
    assert dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "append", [], "run-1:1") == 2
    again = backend.destination()  # a redelivery, possibly to another worker
    assert again.write("users", reader_of(users([1, 2], ["ann", "bob"])), "append", [], "run-1:1") == 2
    assert backend.count("users") == 2
    recorded = backend.query(f"SELECT load_id, table_name, rows FROM {LOADS_TABLE}")
    assert recorded == [("run-1:1", "users", 2)]


def test_one_load_id_can_append_to_two_tables(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1], ["ann"])), "append", [], "run-1:1")
    dest.write("users_copy", reader_of(users([1], ["ann"])), "append", [], "run-1:1")
    assert backend.count("users") == backend.count("users_copy") == 1


def test_a_failing_source_writes_nothing_and_the_load_can_be_retried(backend: Backend, dest: Destination) -> None:
    class SourceBroke(Exception):
        pass

    def broken() -> Iterator[pa.RecordBatch]:
        yield from users([1, 2], ["ann", "bob"]).to_batches()
        raise SourceBroke("connection to the source dropped")

    dest.write("users", reader_of(users([0], ["zed"])), "append", [], "run-1:0")
    schema = users([], []).schema
    with pytest.raises(SourceBroke, match="source dropped"):
        dest.write("users", pa.RecordBatchReader.from_batches(schema, broken()), "append", [], "run-1:1")
    assert backend.count("users") == 1
    assert dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "append", [], "run-1:1") == 2
    assert backend.count("users") == 3


@pytest.mark.parametrize("mode", ["replace", "merge"])
def test_a_failing_source_leaves_the_table_as_it_was(backend: Backend, dest: Destination, mode: str) -> None:
    def broken() -> Iterator[pa.RecordBatch]:
        yield from users([2, 3], ["new", "rows"]).to_batches()
        raise OSError("source file truncated")

    dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "append", [], "l1")
    with pytest.raises(OSError, match="truncated"):
        dest.write("users", pa.RecordBatchReader.from_batches(users([], []).schema, broken()), mode, ["id"], "l2")  # type: ignore[arg-type]
    assert backend.rows("users") == [(1, "ann", 0.5), (2, "bob", 1.0)]


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_the_source_is_read_on_the_calling_thread(backend: Backend, dest: Destination, mode: str) -> None:
    # Sources may hold thread-bound handles (an sqlite3 cursor); the destination must not move them.
    threads: set[int] = set()

    def source() -> Iterator[pa.RecordBatch]:
        for start in range(0, 200_000, 20_000):
            threads.add(threading.get_ident())
            yield from users(list(range(start, start + 20_000)), ["x"] * 20_000).to_batches()

    reader = pa.RecordBatchReader.from_batches(users([], []).schema, source())
    assert dest.write("users", reader, mode, ["id"], "l1") == 200_000  # type: ignore[arg-type]
    assert threads == {threading.get_ident()}
    assert backend.count("users") == 200_000


def test_append_accepts_a_table_and_many_batches(backend: Backend, dest: Destination) -> None:
    table = users(list(range(1000)), [f"u{i}" for i in range(1000)])
    assert dest.write("users", table.to_reader(max_chunksize=64), "append", [], "l1") == 1000
    assert dest.write("users", table, "append", [], "l2") == 1000
    assert backend.count("users") == 2000


def test_append_data_with_fewer_columns_leaves_the_rest_null(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1], ["ann"])), "append", [], "l1")
    dest.write("users", reader_of(pa.table({"name": ["bob"], "id": pa.array([2], pa.int64())})), "append", [], "l2")
    assert backend.rows("users") == [(1, "ann", 0.5), (2, "bob", None)]


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_new_column_in_the_data_is_added_as_nullable(backend: Backend, dest: Destination, mode: str) -> None:
    dest.write("users", reader_of(users([1], ["ann"])), mode, ["id"], "l1")  # type: ignore[arg-type]
    extra = users([2], ["bob"]).append_column("email", pa.array(["b@x.org"]))
    assert dest.write("users", reader_of(extra), mode, ["id"], "l2") == 1  # type: ignore[arg-type]
    assert backend.rows("users") == [(1, "ann", 0.5, None), (2, "bob", 1.0, "b@x.org")]


# -- replace --------------------------------------------------------------------------------------------


def test_replace_replaces_the_rows(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1, 2, 3], ["a", "b", "c"])), "replace", [], "l1")
    assert dest.write("users", reader_of(users([7], ["g"])), "replace", [], "l2") == 1
    assert backend.rows("users") == [(7, "g", 3.5)]


def test_replace_with_other_columns_recreates_the_table(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1, 2], ["a", "b"])), "replace", [], "l1")
    dest.write("users", reader_of(pa.table({"id": ["x"], "city": ["Oslo"]})), "replace", [], "l2")
    assert backend.rows("users") == [("x", "Oslo")]


def test_replace_twice_with_the_same_load_id_gives_the_same_rows(backend: Backend, dest: Destination) -> None:
    for _ in range(2):
        dest.write("users", reader_of(users([1, 2], ["a", "b"])), "replace", [], "l1")
    assert backend.rows("users") == [(1, "a", 0.5), (2, "b", 1.0)]


# -- merge ----------------------------------------------------------------------------------------------


def test_merge_updates_matching_keys_and_inserts_new_ones(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "merge", ["id"], "l1")
    dest.write("users", reader_of(users([2, 3], ["BOB", "cy"], [9.0, 9.5])), "merge", ["id"], "l2")
    assert backend.rows("users") == [(1, "ann", 0.5), (2, "BOB", 9.0), (3, "cy", 9.5)]


def test_merge_run_twice_leaves_the_same_rows(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1, 2], ["ann", "bob"])), "merge", ["id"], "l1")
    for load_id in ("l2", "l2", "l3"):
        dest.write("users", reader_of(users([2, 3], ["BOB", "cy"])), "merge", ["id"], load_id)
    assert backend.rows("users") == [(1, "ann", 0.5), (2, "BOB", 1.0), (3, "cy", 1.5)]


def test_merge_keeps_the_last_row_of_a_key_within_the_batch(backend: Backend, dest: Destination) -> None:
    first = users([1, 2, 1], ["first", "bob", "second"], [1.0, 2.0, 3.0])
    later = users([1], ["last"], [4.0])
    assert dest.write("users", reader_of(first, later), "merge", ["id"], "l1") == 2
    assert backend.rows("users") == [(1, "last", 4.0), (2, "bob", 2.0)]


def test_merge_on_a_composite_key(backend: Backend, dest: Destination) -> None:
    def prices(rows: list[tuple[str, str, float]]) -> pa.Table:
        shop, sku, price = zip(*rows, strict=True)
        return pa.table({"shop": list(shop), "sku": list(sku), "price": list(price)})

    dest.write("prices", reader_of(prices([("a", "x", 1.0), ("a", "y", 2.0), ("b", "x", 3.0)])), "merge", ["shop", "sku"], "l1")
    dest.write("prices", reader_of(prices([("a", "x", 10.0), ("b", "y", 4.0)])), "merge", ["shop", "sku"], "l2")
    assert backend.rows("prices", "shop, sku") == [("a", "x", 10.0), ("a", "y", 2.0), ("b", "x", 3.0), ("b", "y", 4.0)]


def test_merge_key_missing_from_the_data_names_table_and_column(dest: Destination) -> None:
    with pytest.raises(TerminalError, match=r"merge key column 'user_id' is not in the data written to table 'users'"):
        dest.write("users", reader_of(users([1], ["ann"])), "merge", ["user_id"], "l1")


def test_merge_with_a_null_key_is_terminal(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1], ["ann"])), "merge", ["id"], "l1")
    with pytest.raises(TerminalError, match=r"table 'users'.*null key"):
        dest.write(
            "users", reader_of(pa.table({"id": pa.array([None, 5], pa.int64()), "name": ["x", "y"]})), "merge", ["id"], "l2"
        )
    assert backend.rows("users") == [(1, "ann", 0.5)]


def test_merge_without_key_and_unknown_mode_are_terminal(dest: Destination) -> None:
    with pytest.raises(TerminalError, match=r"merge into table 'users' needs key columns"):
        dest.write("users", reader_of(users([1], ["ann"])), "merge", [], "l1")
    with pytest.raises(TerminalError, match=r"unknown write mode 'apend'.*Did you mean 'append'"):
        dest.write("users", reader_of(users([1], ["ann"])), "apend", [], "l1")  # type: ignore[arg-type]


# -- data shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_empty_input_creates_an_empty_table(backend: Backend, dest: Destination, mode: str) -> None:
    empty = pa.RecordBatchReader.from_batches(users([], []).schema, [])
    assert dest.write("users", empty, mode, ["id"], "l1") == 0  # type: ignore[arg-type]
    assert backend.exists("users")
    assert backend.count("users") == 0


def test_empty_replace_empties_the_table(backend: Backend, dest: Destination) -> None:
    dest.write("users", reader_of(users([1, 2], ["a", "b"])), "append", [], "l1")
    assert dest.write("users", pa.RecordBatchReader.from_batches(users([], []).schema, []), "replace", [], "l2") == 0
    assert backend.count("users") == 0


def test_types_round_trip(backend: Backend, dest: Destination) -> None:
    at = dt.datetime(2024, 2, 29, 13, 45, 10, 123456)
    columns = {
        "id": pa.array([1, 2], pa.int64()),
        "amount": pa.array([12.5, None], pa.float64()),
        "name": pa.array(["héllo \"q\" 'x'", None], pa.string()),
        "paid": pa.array([True, None], pa.bool_()),
        "at": pa.array([at, None], pa.timestamp("us")),
        "at_utc": pa.array([at.replace(tzinfo=dt.UTC), None], pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2024, 2, 29), None], pa.date32()),
        "price": pa.array([Decimal("1234.50"), None], pa.decimal128(12, 2)),
        "small": pa.array([-7, None], pa.int32()),
        "nothing": pa.nulls(2),
    }
    dest.write("types", reader_of(pa.table(columns)), "append", [], "l1")
    got = backend.rows("types")
    expected = [
        tuple(backend.stored(value) for value in (1, 12.5, "héllo \"q\" 'x'", True, at, at.replace(tzinfo=dt.UTC))),
        (2, None, None, None, None, None),
    ]
    assert [row[:6] for row in got] == expected
    assert [(row[6], None if row[7] is None else Decimal(str(row[7])), *row[8:]) for row in got] == [
        (backend.stored(dt.date(2024, 2, 29)), Decimal("1234.50"), -7, None),
        (None, None, None, None),
    ]


def test_quoted_names_for_tables_and_columns(backend: Backend, dest: Destination) -> None:
    table = pa.table({"id": [1, 2], 'Odd "Name"': ["a", "b"], "select": [True, False]})
    dest.write('My "Table"', reader_of(table), "merge", ["id", 'Odd "Name"'], "l1")
    dest.write('My "Table"', reader_of(table), "merge", ["id", 'Odd "Name"'], "l2")
    assert backend.rows('My "Table"') == [(1, "a", backend.stored(True)), (2, "b", backend.stored(False))]


# -- types the databases must not bend (issue 9) -----------------------------------------------------------


def test_uint64_beyond_int64_is_stored_exactly_or_refused_naming_the_column(backend: Backend, dest: Destination) -> None:
    # 2**64-1 and 2**63 must never arrive as -1 and -9223372036854775808.
    big = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "big": pa.array([2**64 - 1, 2**63, 5], pa.uint64())})
    if backend.name == "sqlite":  # INTEGER is signed 64-bit: a checked failure, nothing written
        with pytest.raises(TerminalError, match=r"table 'wide' column 'big'.*18446744073709551615"):
            dest.write("wide", reader_of(big), "append", [], "l1")
        assert not backend.exists("wide")
        small = pa.table({"id": pa.array([1], pa.int64()), "big": pa.array([2**63 - 1], pa.uint64())})
        dest.write("wide", reader_of(small), "append", [], "l2")
        assert backend.rows("wide") == [(1, 2**63 - 1)]
        return
    for mode in ("append", "merge"):
        dest.write(f"wide_{mode}", reader_of(big), mode, ["id"], "l1")  # type: ignore[arg-type]
        assert [(i, int(v)) for i, v in backend.rows(f"wide_{mode}")] == [(1, 2**64 - 1), (2, 2**63), (3, 5)]


def test_decimals_keep_their_precision_and_scale(backend: Backend, dest: Destination) -> None:
    amounts = pa.array([Decimal("1.5"), Decimal("123456789012.123456"), None], pa.decimal128(18, 6))
    dest.write("money", reader_of(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "amount": amounts})), "append", [], "l1")
    # The declared scale survives: 1.5 comes back as 1.500000 (text in SQLite, which has no decimal type).
    assert [(i, None if a is None else str(a)) for i, a in backend.rows("money")] == [
        (1, "1.500000"),
        (2, "123456789012.123456"),
        (3, None),
    ]
    declared = {
        "postgresql": "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'money'::regclass AND attname = 'amount'",
        "duckdb": "SELECT data_type FROM information_schema.columns WHERE table_name = 'money' AND column_name = 'amount'",
        "sqlite": "SELECT type FROM pragma_table_info('money') WHERE name = 'amount'",
    }
    assert backend.query(declared[backend.name]) == [
        {"postgresql": ("numeric(18,6)",), "duckdb": ("DECIMAL(18,6)",), "sqlite": ("TEXT",)}[backend.name]
    ]


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_column_that_becomes_fractional_is_refused_naming_both_types(backend: Backend, dest: Destination, mode: str) -> None:
    dest.write("m", reader_of(pa.table({"id": [1, 2], "v": [10, 30]})), mode, ["id"], "l1")  # type: ignore[arg-type]
    with pytest.raises(
        TerminalError, match=r"table 'm' column 'v' is (bigint|BIGINT|INTEGER) but the data's is (double|DOUBLE|REAL)"
    ):
        dest.write("m", reader_of(pa.table({"id": [1, 2], "v": [10.75, 30.5]})), mode, ["id"], "l2")  # type: ignore[arg-type]
    assert backend.rows("m") == [(1, 10), (2, 30)]  # never 11 and 30


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_widen_alters_the_column_so_no_value_is_rounded(backend: Backend, dest: Destination, mode: str) -> None:
    dest.write("m", reader_of(pa.table({"id": [1, 2], "v": [10, 30]})), mode, ["id"], "l1")  # type: ignore[arg-type]
    dest.write("m", reader_of(pa.table({"id": [3, 4], "v": [10.75, 30.5]})), mode, ["id"], "l2", "widen")  # type: ignore[arg-type]
    expected = [(3, 10.75), (4, 30.5)] if mode == "replace" else [(1, 10.0), (2, 30.0), (3, 10.75), (4, 30.5)]
    assert backend.rows("m") == expected
    # Integers into the now floating column convert without loss again; strict is enough.
    dest.write("m", reader_of(pa.table({"id": [5], "v": pa.array([7], pa.int32())})), mode, ["id"], "l3")  # type: ignore[arg-type]
    assert backend.rows("m")[-1] == (5, 7.0)


@pytest.mark.parametrize("mode", ["append", "merge"])
def test_whole_numbers_load_into_a_floating_column_when_each_value_fits(backend: Backend, dest: Destination, mode: str) -> None:
    """A daily file whose amounts happen to be whole is read as integers: they load into the double column the earlier
    days made (each value checked, strict as it is); one a double cannot hold exactly is refused naming the column."""
    dest.write("m", reader_of(pa.table({"id": [1], "v": [10.5]})), mode, ["id"], "l1")  # type: ignore[arg-type]
    dest.write("m", reader_of(pa.table({"id": [2, 3], "v": [1, 2]})), mode, ["id"], "l2")  # type: ignore[arg-type]
    assert backend.rows("m") == [(1, 10.5), (2, 1.0), (3, 2.0)]
    with pytest.raises(TerminalError, match=r"table 'm' column 'v': a value of type int64 does not fit .*nothing was written"):
        dest.write("m", reader_of(pa.table({"id": [4, 5], "v": [3, 2**53 + 1]})), mode, ["id"], "l3")  # type: ignore[arg-type]
    assert backend.rows("m") == [(1, 10.5), (2, 1.0), (3, 2.0)]


def test_widen_refuses_integers_a_double_cannot_hold(backend: Backend, dest: Destination) -> None:
    dest.write("m", reader_of(pa.table({"id": [1], "v": [2**53 + 1]})), "append", [], "l1")
    with pytest.raises(TerminalError, match=r"table 'm' column 'v' cannot widen.*beyond 2\*\*53"):
        dest.write("m", reader_of(pa.table({"id": [2], "v": [0.5]})), "append", [], "l2", "widen")
    assert backend.rows("m") == [(1, 2**53 + 1)]


def test_widen_integers_to_decimals_and_narrow_data_into_wide_columns(backend: Backend, dest: Destination) -> None:
    dest.write("m", reader_of(pa.table({"id": [1], "v": pa.array([2**62], pa.int64())})), "append", [], "l1")
    cents = pa.array([Decimal("0.25")], pa.decimal128(4, 2))
    if backend.name == "sqlite":  # decimals are text in SQLite: no column type holds both
        with pytest.raises(TerminalError, match=r"table 'm' column 'v' is INTEGER but the data's is TEXT.*no type holds both"):
            dest.write("m", reader_of(pa.table({"id": [2], "v": cents})), "append", [], "l2", "widen")
        return
    dest.write("m", reader_of(pa.table({"id": [2], "v": cents})), "append", [], "l2", "widen")
    dest.write("m", reader_of(pa.table({"id": [3], "v": pa.array([-3], pa.int8())})), "append", [], "l3")
    assert [(i, str(v)) for i, v in backend.rows("m")] == [(1, f"{2**62}.00"), (2, "0.25"), (3, "-3.00")]


def test_unknown_schema_evolution_is_terminal(dest: Destination) -> None:
    with pytest.raises(TerminalError, match=r"unknown schema_evolution 'loose'.*strict, widen"):
        dest.write("m", reader_of(users([1], ["a"])), "append", [], "l1", "loose")  # type: ignore[arg-type]


NESTED_ROWS = [
    {"id": 1, "attrs": {"plan": "pro", "seats": 3}, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": None}]},
    {"id": 2, "attrs": None, "items": []},
]


def _as_python(value: Any) -> Any:
    """JSON text (SQLite) as Python values; PostgreSQL jsonb and DuckDB structs already are."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("mode", ["append", "replace", "merge"])
def test_nested_values_are_stored_as_json_or_native_types(backend: Backend, dest: Destination, mode: str) -> None:
    data = pa.Table.from_pylist(NESTED_ROWS)
    assert pa.types.is_struct(data.schema.field("attrs").type)
    dest.write("nested", reader_of(data), mode, ["id"], "l1")  # type: ignore[arg-type]
    dest.write("nested", reader_of(data), mode, ["id"], "l2")  # type: ignore[arg-type]
    got = [{"id": i, "attrs": _as_python(a), "items": _as_python(x)} for i, a, x in backend.rows("nested")]
    assert got == (sorted(NESTED_ROWS * 2, key=lambda row: row["id"]) if mode == "append" else NESTED_ROWS)


def test_a_nested_value_json_cannot_hold_names_the_column(backend: Backend, dest: Destination) -> None:
    data = pa.table({"id": [1], "blob": pa.array([{"raw": b"\x00\x01"}], pa.struct([("raw", pa.binary())]))})
    if backend.name == "duckdb":  # a native STRUCT holds bytes
        dest.write("nested", reader_of(data), "append", [], "l1")
        assert backend.rows("nested") == [(1, {"raw": b"\x00\x01"})]
        return
    with pytest.raises(TerminalError, match=r"table 'nested' column 'blob' holds bytes values.*hex or base64"):
        dest.write("nested", reader_of(data), "append", [], "l1")
    assert not backend.exists("nested")


LONG = "é" * 32  # 32 characters, 64 bytes in UTF-8: one byte more than PostgreSQL keeps


@pytest.mark.parametrize(("table", "column"), [(f"t_{LONG}", "id"), ("t", f"c_{'x' * 62}")])
def test_names_the_database_would_cut_short_are_refused_before_loading(
    backend: Backend, dest: Destination, table: str, column: str
) -> None:
    data = pa.table({column: pa.array([1], pa.int64())})
    if backend.name != "postgresql":  # no identifier limit to hit: the name is kept as written, run after run
        for load_id in ("l1", "l2"):
            dest.write(table, reader_of(data), "append", [], load_id)
        assert backend.query(f"SELECT {quote(column)} FROM {quote(table)}") == [(1,), (1,)]
        return
    kind = "table" if table != "t" else "column"
    with pytest.raises(TerminalError, match=rf"{kind} name '.*' .*is 6[4-6] bytes long, but PostgreSQL keeps at most 63 bytes"):
        dest.write(table, reader_of(data), "append", [], "l1")
    assert backend.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 't%'") == [(0,)]


def test_a_name_of_exactly_the_limit_works_run_after_run(backend: Backend, dest: Destination) -> None:
    column = "c" * 63
    for load_id in ("l1", "l2"):
        dest.write("t", reader_of(pa.table({column: [1]})), "append", [], load_id)
    assert backend.query(f"SELECT {quote(column)} FROM t") == [(1,), (1,)]


def at_once(backend: Backend, loads: list[tuple[str, pa.Table]]) -> list[BaseException]:
    """Append each ``(table, data)`` from its own thread and destination, all starting together; the errors."""
    start = threading.Barrier(len(loads))
    errors: list[BaseException] = []

    def load(i: int, table: str, data: pa.Table) -> None:
        dest = backend.destination()
        try:
            start.wait()
            dest.write(table, reader_of(data), "append", [], f"run-1:{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i, table, data)) for i, (table, data) in enumerate(loads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_loads_creating_the_same_schema_and_tables_at_once_all_succeed(backend: Backend) -> None:
    # A first deploy: several objects create the same new schema (and some the same table) at once.
    prefix = "" if backend.name == "sqlite" else "fresh."
    tables = [f"{prefix}t{i}" for i in range(4)] + [f"{prefix}shared"] * 4
    assert at_once(backend, [(table, users([i], [f"u{i}"])) for i, table in enumerate(tables)]) == []
    assert [backend.count(f"{prefix}t{i}") for i in range(4)] == [1, 1, 1, 1]
    assert backend.count(f"{prefix}shared") == 4


def test_loads_adding_the_same_new_column_at_once_all_succeed(backend: Backend) -> None:
    backend.destination().write("users", reader_of(users([0], ["zed"])), "append", [], "run-0:0")
    rows = 20_000  # each load holds the table long enough for the others to look at it meanwhile
    extra = [
        users(list(range(i * rows, (i + 1) * rows)), ["u"] * rows).append_column("email", pa.array([f"u{i}@x.org"] * rows))
        for i in range(1, 7)
    ]
    assert at_once(backend, [("users", data) for data in extra]) == []
    emails = backend.query("SELECT email, count(*) FROM users GROUP BY email ORDER BY email NULLS FIRST")
    assert emails == [(None, 1)] + [(f"u{i}@x.org", rows) for i in range(1, 7)]
