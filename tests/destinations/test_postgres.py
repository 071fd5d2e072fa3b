"""PostgreSQL-specific destination behaviour; the shared semantics are in test_contract.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from sluice.destinations.postgres import CheckQueryError, PostgresDestination
from sluice.destinations.registry import open_destination
from sluice.destinations.sql import LoadedRows
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin

pytestmark = pytest.mark.postgres


@pytest.fixture
def destination() -> Iterator[Callable[[str], PostgresDestination]]:
    """Opens destinations by URL (as the registry does) and closes them after the test."""
    opened: list[PostgresDestination] = []

    def open_url(url: str) -> PostgresDestination:
        dest = open_destination(ConnectionSpec("wh", url, Origin("sluice.yaml")), root=Path("."))
        assert isinstance(dest, PostgresDestination)
        opened.append(dest)
        return dest

    yield open_url
    for dest in opened:
        dest.close()


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def test_schema_qualified_table_creates_the_schema(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    dest = destination(pg_db_url)
    table = pa.table({"user_id": [1, 2], "name": ["ann", "bob"]})
    dest.write("analytics.dim_users", table.to_reader(), "merge", ["user_id"], "l1")
    dest.write("analytics.dim_users", pa.table({"user_id": [2], "name": ["BOB"]}).to_reader(), "merge", ["user_id"], "l2")
    dest.close()
    assert query(pg_db_url, "SELECT * FROM analytics.dim_users ORDER BY user_id") == [(1, "ann"), (2, "BOB")]
    assert query(pg_db_url, "SELECT table_name FROM _sluice_loads ORDER BY load_id") == [("analytics.dim_users",)] * 2


def test_column_types_follow_the_arrow_schema(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    table = pa.table(
        {
            "i64": pa.array([1], pa.int64()),
            "i32": pa.array([1], pa.int32()),
            "f64": pa.array([1.0], pa.float64()),
            "s": pa.array(["x"], pa.string()),
            "b": pa.array([True], pa.bool_()),
            "ts": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us")),
            "tstz": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "d": pa.array([dt.date(2024, 1, 1)], pa.date32()),
            "dec": pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
            "bin": pa.array([b"\x00\xff"], pa.binary()),
        }
    )
    destination(pg_db_url).write("typed", table.to_reader(), "append", [], "l1")
    types = query(
        pg_db_url,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'typed' ORDER BY ordinal_position",
    )
    assert types == [
        ("i64", "bigint"),
        ("i32", "integer"),
        ("f64", "double precision"),
        ("s", "text"),
        ("b", "boolean"),
        ("ts", "timestamp without time zone"),
        ("tstz", "timestamp with time zone"),
        ("d", "date"),
        ("dec", "numeric"),  # numeric(10,2): information_schema's data_type has no modifiers
        ("bin", "bytea"),
    ]
    assert query(pg_db_url, "SELECT bin, dec FROM typed") == [(b"\x00\xff", Decimal("1.25"))]


def test_replace_with_the_same_columns_keeps_indexes(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    dest = destination(pg_db_url)
    dest.write("users", pa.table({"id": [1, 2], "name": ["a", "b"]}).to_reader(), "replace", [], "l1")
    query(pg_db_url, "CREATE UNIQUE INDEX users_id ON users (id)")
    dest.write("users", pa.table({"id": [3], "name": ["c"]}).to_reader(), "replace", [], "l2")
    assert query(pg_db_url, "SELECT * FROM users") == [(3, "c")]
    assert query(pg_db_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'users'") == [("users_id",)]


def test_append_with_a_mismatched_type_names_the_column(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    query(pg_db_url, "CREATE TABLE events (id integer, note varchar(40))")
    dest = destination(pg_db_url)
    with pytest.raises(TerminalError, match=r"table 'events' column 'id' is integer but the data's is bigint"):
        dest.write("events", pa.table({"id": pa.array([1], pa.int64()), "note": ["x"]}).to_reader(), "append", [], "l1")
    # varchar(40) takes text data: binary COPY only cares about the base type.
    dest.write("events", pa.table({"id": pa.array([1], pa.int32()), "note": ["x"]}).to_reader(), "append", [], "l2")
    assert query(pg_db_url, "SELECT * FROM events") == [(1, "x")]


def test_merge_into_an_existing_table_converts_only_without_loss(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    query(pg_db_url, "CREATE TABLE prices (sku varchar(10) PRIMARY KEY, price numeric(8, 2))")
    dest = destination(pg_db_url)
    with pytest.raises(TerminalError, match=r"column 'price' is numeric\(8,2\) but the data's is double precision"):
        dest.write("prices", pa.table({"sku": ["a"], "price": [1.505]}).to_reader(), "merge", ["sku"], "l1")
    prices = pa.array([Decimal("1.5"), Decimal("2.25")], pa.decimal128(6, 2))
    dest.write("prices", pa.table({"sku": ["a", "b"], "price": prices}).to_reader(), "merge", ["sku"], "l2")
    assert query(pg_db_url, "SELECT * FROM prices ORDER BY sku") == [("a", Decimal("1.50")), ("b", Decimal("2.25"))]


def test_unreachable_server_is_transient_and_hides_the_password(destination: Callable[[str], PostgresDestination]) -> None:
    dest = destination("postgresql://app:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(TransientError, match=r"cannot connect to PostgreSQL connection 'wh'") as caught:
        dest.write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    assert "s3cret" not in str(caught.value)
    assert "app:***@127.0.0.1:1" in str(caught.value)


def test_a_lock_timeout_is_transient(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    dest = destination(pg_db_url + "?options=-c%20lock_timeout%3D100")
    dest.write("busy", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    with psycopg.connect(pg_db_url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TransientError, match=r"writing table 'busy'.*lock"):
            dest.write("busy", pa.table({"a": [2]}).to_reader(), "replace", [], "l2")
    dest.write("busy", pa.table({"a": [2]}).to_reader(), "replace", [], "l2")
    assert query(pg_db_url, "SELECT a FROM busy") == [(2,)]


def test_a_dropped_connection_is_transient_and_the_next_write_reconnects(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    dest = destination(pg_db_url)
    dest.write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    query(
        pg_db_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    with pytest.raises(TransientError):
        dest.write("t", pa.table({"a": [2]}).to_reader(), "append", [], "l2")
    assert dest.write("t", pa.table({"a": [2]}).to_reader(), "append", [], "l2") == 1
    assert query(pg_db_url, "SELECT a FROM t ORDER BY a") == [(1,), (2,)]


def test_postgres_scheme_alias_and_driver_suffix(destination: Callable[[str], PostgresDestination]) -> None:
    assert isinstance(destination("postgres://u@h/db"), PostgresDestination)
    assert isinstance(destination("postgresql+psycopg://u@h:5/db"), PostgresDestination)


def test_a_copy_refused_midway_writes_nothing(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    query(pg_db_url, "CREATE TABLE strict (id bigint NOT NULL, note text)")
    ids = pa.array([*range(200_000), None], pa.int64())
    data = pa.table({"id": ids, "note": pa.array(["n"] * len(ids))})
    dest = destination(pg_db_url)
    with pytest.raises(TerminalError, match=r"writing table 'strict'.*not-null"):
        dest.write("strict", data.to_reader(max_chunksize=10_000), "append", [], "l1")
    assert query(pg_db_url, "SELECT count(*) FROM strict") == [(0,)]
    assert dest.write("strict", data.slice(0, 10).to_reader(), "append", [], "l1") == 10


def test_new_tables_get_types_that_hold_every_value(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    table = pa.table(
        {
            "u64": pa.array([2**64 - 1], pa.uint64()),
            "u32": pa.array([2**32 - 1], pa.uint32()),
            "u8": pa.array([255], pa.uint8()),
            "dec": pa.array([Decimal("1.500000")], pa.decimal128(18, 6)),
            "attrs": pa.array([{"a": 1}], pa.struct([("a", pa.int64())])),
            "tags": pa.array([[1, 2]], pa.list_(pa.int64())),
        }
    )
    destination(pg_db_url).write("typed", table.to_reader(), "append", [], "l1")
    types = query(
        pg_db_url,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'typed'::regclass AND attnum > 0 ORDER BY attnum",
    )
    assert types == [
        ("u64", "numeric(20,0)"),
        ("u32", "bigint"),
        ("u8", "smallint"),
        ("dec", "numeric(18,6)"),
        ("attrs", "jsonb"),
        ("tags", "jsonb"),
    ]
    assert query(pg_db_url, "SELECT * FROM typed") == [
        (Decimal(2**64 - 1), 2**32 - 1, 255, Decimal("1.500000"), {"a": 1}, [1, 2])
    ]


def test_a_list_into_an_existing_array_column_stays_an_array(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    query(pg_db_url, "CREATE TABLE tagged (id bigint, tags bigint[])")
    data = pa.table({"id": pa.array([1], pa.int64()), "tags": pa.array([[1, 2]], pa.list_(pa.int64()))})
    destination(pg_db_url).write("tagged", data.to_reader(), "append", [], "l1")
    assert query(pg_db_url, "SELECT * FROM tagged") == [(1, [1, 2])]


def test_widen_alters_a_bigint_column_for_uint64_data(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    dest = destination(pg_db_url)
    dest.write("ids", pa.table({"id": pa.array([1], pa.int64())}).to_reader(), "append", [], "l1")
    big = pa.table({"id": pa.array([2**64 - 1], pa.uint64())})
    with pytest.raises(
        TerminalError, match=r"table 'ids' column 'id' is bigint but the data's is numeric\(20,0\) \(Arrow uint64\)"
    ):
        dest.write("ids", big.to_reader(), "append", [], "l2")
    dest.write("ids", big.to_reader(), "append", [], "l2", "widen")
    assert query(
        pg_db_url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'ids'::regclass AND attnum = 1"
    ) == [("numeric(20,0)",)]
    assert query(pg_db_url, "SELECT id FROM ids ORDER BY id") == [(Decimal(1),), (Decimal(2**64 - 1),)]


# -- which server errors a retry can get past: each provoked on the real server ------------------------------


def _adbc(url: str) -> Any:
    import adbc_driver_postgresql.dbapi

    return adbc_driver_postgresql.dbapi.connect(url)


def _assert_transient(dest: PostgresDestination, exc: BaseException, sqlstate: str) -> None:
    assert isinstance(exc, Exception)
    assert getattr(exc, "sqlstate", None) == sqlstate
    assert dest.is_transient(exc)
    assert isinstance(dest.wrap_error(exc, "t"), TransientError)


def test_a_deadlock_is_transient(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    query(pg_db_url, "CREATE TABLE pair (id int PRIMARY KEY, v int); INSERT INTO pair VALUES (1, 0), (2, 0)")
    first, second = _adbc(pg_db_url), _adbc(pg_db_url)
    errors: list[BaseException] = []

    def update(conn: Any, row: int) -> None:
        try:
            with contextlib.closing(conn.cursor()) as cur:
                cur.execute(f"UPDATE pair SET v = 1 WHERE id = {row}")
        except Exception as exc:
            errors.append(exc)

    try:
        update(first, 1)
        update(second, 2)
        blocked = threading.Thread(target=update, args=(first, 2))  # waits for second's row 2
        blocked.start()
        while not query(
            pg_db_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        ):
            blocked.join(0.01)
        update(second, 1)  # waits for first's row 1: one of the two is chosen as the deadlock victim
        blocked.join()
    finally:
        for conn in (first, second):
            conn.rollback()
            conn.close()
    assert len(errors) == 1
    _assert_transient(destination(pg_db_url), errors[0], "40P01")


def test_a_serialization_failure_is_transient(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    query(pg_db_url, "CREATE TABLE seats (n int)")
    serializable = pg_db_url + "?options=-c%20default_transaction_isolation%3Dserializable"
    first, second = _adbc(serializable), _adbc(serializable)
    try:
        with contextlib.closing(first.cursor()) as a, contextlib.closing(second.cursor()) as b:
            for cur in (a, b):  # both read, both write what the other read: one must fail
                cur.execute("SELECT count(*) FROM seats")
                cur.fetchall()
            a.execute("INSERT INTO seats VALUES (1)")
            b.execute("INSERT INTO seats VALUES (2)")
            first.commit()
            with pytest.raises(Exception) as caught:
                second.commit()
    finally:
        for conn in (first, second):
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()
    _assert_transient(destination(pg_db_url), caught.value, "40001")


def test_a_lock_timeout_is_transient_with_its_sqlstate(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    query(pg_db_url, "CREATE TABLE busy (a int)")
    waiter = _adbc(pg_db_url + "?options=-c%20lock_timeout%3D50")
    try:
        with psycopg.connect(pg_db_url) as holder:
            holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
            with contextlib.closing(waiter.cursor()) as cur, pytest.raises(Exception) as caught:
                cur.execute("SELECT * FROM busy")
    finally:
        with contextlib.suppress(Exception):
            waiter.rollback()
        waiter.close()
    _assert_transient(destination(pg_db_url), caught.value, "55P03")


def test_a_connection_killed_by_the_server_is_transient(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    victim = _adbc(pg_db_url)
    try:
        with contextlib.closing(victim.cursor()) as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchall()[0][0]
            query(pg_db_url, "SELECT pg_terminate_backend(%s)", pid)
            with pytest.raises(Exception) as caught:
                cur.execute("SELECT 1")
    finally:
        with contextlib.suppress(Exception):
            victim.close()
    # libpq reports the server's FATAL 57P01 as a lost connection: no SQLSTATE, an OperationalError.
    assert "terminating connection due to administrator command" in str(caught.value)
    dest = destination(pg_db_url)
    assert dest.is_transient(caught.value)
    assert isinstance(dest.wrap_error(caught.value, "t"), TransientError)


def test_a_duplicate_key_in_the_data_stays_terminal(pg_db_url: str, destination: Callable[[str], PostgresDestination]) -> None:
    query(pg_db_url, "CREATE TABLE keyed (id bigint PRIMARY KEY)")
    dest = destination(pg_db_url)
    with pytest.raises(TerminalError, match=r"writing table 'keyed'.*23505"):
        dest.write("keyed", pa.table({"id": pa.array([1, 1], pa.int64())}).to_reader(), "append", [], "l1")


def test_merges_into_one_table_take_turns_and_insert_a_new_key_once(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    """Two merges at once (dates of a parallel backfill) each miss the other's uncommitted rows: without taking turns
    both insert a new key. Held at the merge lock, both wait; released, they run one after the other."""
    import time

    destination(pg_db_url).write("totals", pa.table({"day": ["d0"], "n": [0]}).to_reader(), "merge", ["day"], "l0")
    errors: list[BaseException] = []

    def merge(load_id: str, n: int) -> None:
        try:
            table = pa.table({"day": ["d1", f"own-{load_id}"], "n": [n, n]})
            destination(pg_db_url).write("totals", table.to_reader(), "merge", ["day"], load_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with psycopg.connect(pg_db_url) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("sluice:ddl:merge:totals",))
        threads = [threading.Thread(target=merge, args=(f"l{i}", i)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        waiting = 0
        for _ in range(600):  # until both merges wait for the lock (at most a minute)
            waiting = query(pg_db_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]
            if waiting == 2:
                break
            time.sleep(0.1)
        assert waiting == 2
        holder.rollback()
    for thread in threads:
        thread.join()
    assert not errors
    rows = query(pg_db_url, "SELECT day, n FROM totals ORDER BY day")
    assert [day for day, _ in rows] == ["d0", "d1", "own-l1", "own-l2"]


@pytest.mark.parametrize(("mode", "key"), [("append", []), ("merge", ["id"]), ("replace", [])])
def test_before_commit_sees_the_rows_of_this_load_apart_and_they_are_dropped_before_the_commit(
    pg_db_url: str, destination: Callable[[str], PostgresDestination], mode: str, key: list[str]
) -> None:
    dest = destination(pg_db_url)
    dest.write("t", pa.table({"id": [1, 2], "v": ["a", "b"]}).to_reader(), "append", [], "l1")
    seen: list[tuple[LoadedRows, list[tuple[Any, ...]]]] = []

    def look(loaded: LoadedRows) -> None:
        relation = loaded.relation or '"t"'
        seen.append((loaded, dest.fetch(f"SELECT * FROM {relation} ORDER BY 1, 2")[1]))

    rows = pa.table({"id": [2, 3, 3], "v": ["x", "y", "z"]})
    dest.write("t", rows.to_reader(), mode, key, "l2", before_commit=look, keep_load=True)  # type: ignore[arg-type]
    loaded, looked_at = seen[0]
    assert loaded.rows == 3 and looked_at == [(2, "x"), (3, "y"), (3, "z")]  # a merge's before keeping the last of a key
    assert (loaded.relation is None) == loaded.only_table == (mode == "replace")
    left = dest.fetch("SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()")[1]  # the same session
    assert left == []
    expected = {"append": 5, "merge": 3, "replace": 3}[mode]
    assert query(pg_db_url, "SELECT count(*) FROM t") == [(expected,)]


def test_an_append_without_keep_load_is_not_staged_and_says_so(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    dest = destination(pg_db_url)
    dest.write("t", pa.table({"id": [1]}).to_reader(), "append", [], "l1")
    seen: list[LoadedRows] = []
    dest.write("t", pa.table({"id": [2, 3]}).to_reader(), "append", [], "l2", before_commit=seen.append)
    assert seen == [LoadedRows(2, None, only_table=False)]


def test_a_query_that_fails_in_before_commit_raises_its_cause_and_leaves_the_load_usable(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    dest = destination(pg_db_url)
    errors: list[str] = []
    after: list[list[tuple[Any, ...]]] = []

    def look(loaded: LoadedRows) -> None:
        statements = ("SELECT nosuch FROM t", "SELECT v > 5 FROM t", "SELECT 1 / (id - id) FROM t", "SELECT id, id FROM t")
        for sql in (*statements, "ROLLBACK", "COMMIT"):  # nor can a check end the load's transaction
            with pytest.raises(CheckQueryError) as caught:
                dest.fetch(sql)
            errors.append(str(caught.value))
        after.append(dest.fetch("SELECT count(*) FROM t")[1])

    dest.write("t", pa.table({"id": [1, 2], "v": ["a", "b"]}).to_reader(), "append", [], "l1", before_commit=look)
    assert errors == [
        'column "nosuch" does not exist',
        "operator does not exist: text > integer",
        "division by zero",
        'column "id" specified more than once; give each column of the check\'s query a name of its own (AS ...)',
        "EXECUTE of transaction commands is not implemented",
        "EXECUTE of transaction commands is not implemented",
    ]
    assert after == [[(2,)]]
    assert query(pg_db_url, "SELECT count(*) FROM t") == [(2,)]  # committed


def test_a_load_whose_transaction_was_aborted_is_not_reported_written(
    pg_db_url: str, destination: Callable[[str], PostgresDestination]
) -> None:
    """COMMIT of an aborted transaction is a silent ROLLBACK: the write must raise, not return its rows."""
    dest = destination(pg_db_url)

    def abort(loaded: LoadedRows) -> None:
        with contextlib.suppress(Exception):
            dest.execute("SELECT nosuch FROM t")  # not through fetch: the transaction is aborted

    with pytest.raises(TerminalError, match=r"was aborted by a statement whose error was caught.*nothing was written"):
        dest.write("t", pa.table({"id": [1, 2]}).to_reader(), "append", [], "l1", before_commit=abort)
    assert query(pg_db_url, "SELECT to_regclass('t')") == [(None,)]
    assert dest.write("t", pa.table({"id": [1, 2]}).to_reader(), "append", [], "l1") == 2  # the connection is usable
    assert query(pg_db_url, "SELECT count(*) FROM t") == [(2,)]
