"""MysqlCapture against the throwaway MariaDB: types identical in snapshot and stream, DDL, echo, lost positions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from servers_fixtures import mysql_connect, with_database
from sluice.cdc.base import ChangeBatch, PositionLost, SourceNotReady, SyncError
from sluice.cdc.events import ChangeEvent, Column, SchemaChange
from sluice.cdc.mysql_binlog import BinlogConnection
from sluice.cdc.mysql_capture import MysqlCapture, default_server_id, server_problems
from sluice.cdc.mysql_rows import TableMap, map_columns, parse_table_map
from sluice.cdc.mysql_stream import BinlogStream
from sluice.cdc.plugins import MysqlCaptureOptions

pytestmark = pytest.mark.mysql

TYPES_TABLE = """CREATE TABLE types (
  id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, d DECIMAL(65,30), d2 DECIMAL(12,2), f FLOAT, db DOUBLE,
  c CHAR(5), vc VARCHAR(300), tx TEXT, l1 VARCHAR(10) CHARACTER SET latin1, bn BINARY(4), vb VARBINARY(10), bl BLOB,
  e ENUM('a','b','c'), st SET('x','y','z'), j JSON, b1 BIT(1), b9 BIT(9), y YEAR, dd DATE, t0 TIME, t2 TIME(2), t6 TIME(6),
  dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL)"""
ROWS = [
    "(18446744073709551615, -128, 255, -32768, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,"
    " '-99999999999999999999999999999999999.999999999999999999999999999999', -0.5, 3.40282e38, 1.7976931348623157e308,"
    " 'ab ', 'h\U0001f600llo \u00e9', 'long text \U0001f680', 'caf\u00e9', 'ab', 'x\\0y', 'blob', 'b', 'x,z', '{\"a\": [1, 2]}',"
    " 1, 300, 2155, '2024-02-29', '-838:59:59', '-00:00:00.01', '838:59:59.999999',"
    " '9999-12-31 23:59:59', '2024-01-01 05:00:00.000001', '2038-01-19 08:14:07', '2024-06-30 12:00:00.5')",
    "(1, 0, 0, 0, 0, 0, 0, 0, 0, '0', 0, 1.1, 0.1, '', '', '', '', '', '', '', 'a', '', '[]', 0, 0, 0,"
    " '0000-00-00', '00:00:00', '00:00:00', '-00:00:00.000001',"
    " '0000-00-00 00:00:00', '2024-02-30 10:00:00', '0000-00-00 00:00:00', '1970-01-01 05:00:01.001')",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


@pytest.fixture
def capmy_url(mysql_url: str) -> Iterator[str]:
    """A fresh ``capmy_...`` database, dropped after the test."""
    name = f"capmy_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    yield with_database(mysql_url, name)
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def capture(url: str, marker: str | None = None) -> MysqlCapture:
    return MysqlCapture(url, MysqlCaptureOptions(), f"t{uuid.uuid4().hex[:8]}", "src", marker)


def execute(url: str, *statements: str) -> None:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def collect(cap: MysqlCapture, start: list[int], count: int, max_batches: int = 200) -> tuple[list[Any], list[ChangeBatch]]:
    """Events from ``start`` until ``count`` of them arrived (or ``max_batches`` batches of 0.3 s)."""
    events: list[Any] = []
    batches = []
    for batch in cap.stream(start, cap.list_tables(), 0.3):
        batches.append(batch)
        events += batch.events
        if len(events) >= count or len(batches) >= max_batches:
            break
    return events, batches


def live(cap: MysqlCapture, start: list[int], url: str, statements: list[str]) -> list[Any]:
    """The events of ``statements`` streamed live: each read while the catalog still shows its result."""
    events: list[Any] = []
    stream = cap.stream(start, cap.list_tables(), 0.3)
    for statement in statements:
        execute(url, statement)
        for _ in range(50):
            batch = next(stream)
            events += batch.events
            if batch.events:
                break
    stream.close()
    return events


def test_every_type_reads_the_same_in_snapshot_and_stream_under_a_non_utc_zone(capmy_url: str) -> None:
    execute(capmy_url, TYPES_TABLE)
    cap = capture(capmy_url)
    try:
        start, _ = cap.current_position()
        execute(
            capmy_url,
            "SET time_zone = '+05:30'",
            "SET sql_mode = 'ALLOW_INVALID_DATES'",
            "INSERT INTO types VALUES " + ", ".join(ROWS),
        )
        table = cap.list_tables()[0]
        chunks = list(cap.snapshot(table, None, 10))
        snapshot = {event.key[0]: event.after for chunk in chunks for event in chunk.as_events(table.key)}
        events, batches = collect(cap, start, 3)
        stream = {event.key[0]: event.after for event in events if isinstance(event, ChangeEvent)}
    finally:
        cap.close()
    assert stream == snapshot
    assert sum(chunk.invalid_dates for chunk in chunks) == sum(batch.invalid_dates for batch in batches) == 4
    assert sum(batch.invalid_dates_by_table.get(table.qualified, 0) for batch in batches) == 4  # all of this table
    assert {name for batch in batches for name in batch.invalid_dates_by_table} == {table.qualified}
    top = snapshot[18446744073709551615]
    assert top["d"] == "-99999999999999999999999999999999999.999999999999999999999999999999"
    assert (top["d2"], top["tu"], top["iu"], top["mu"]) == ("-0.50", 255, 4294967295, 16777215)
    assert top["vc"] == "h\U0001f600llo \u00e9" and top["tx"] == "long text \U0001f680" and top["l1"] == "caf\u00e9"
    assert (top["c"], top["bn"], top["vb"], top["bl"]) == ("ab", b"ab\0\0", b"x\0y", b"blob")
    assert (top["e"], top["st"], top["j"], top["b1"], top["b9"], top["y"]) == ("b", "x,z", '{"a": [1, 2]}', True, 300, 2155)
    assert (top["t0"], top["t2"], top["t6"]) == ("-838:59:59", "-00:00:00.01", "838:59:59.999999")
    assert (top["dt"], top["dt6"]) == ("9999-12-31 23:59:59", "2024-01-01 05:00:00.000001")  # wall clock, as written
    assert top["ts"] == (2147483647 - 1800) * 1_000_000  # 08:14:07 written at +05:30 is 02:44:07 UTC
    assert top["ts3"] == 1719729000500000  # 2024-06-30 12:00:00.5 +05:30 = 06:30:00.5 UTC
    assert top["f"] == pytest.approx(3.40282e38, rel=1e-6) and top["db"] == 1.7976931348623157e308
    zero = snapshot[1]
    assert (zero["dd"], zero["dt"], zero["dt6"], zero["ts"]) == (None, None, None, None)
    assert zero["d"] == "0.000000000000000000000000000000" and zero["t6"] == "-00:00:00.000001"
    assert zero["f"] == pytest.approx(1.1) and zero["db"] == 0.1
    assert all(value is None for name, value in snapshot[2].items() if name != "id")


def test_uuid_and_inet_read_the_same_in_snapshot_and_stream(capmy_url: str) -> None:
    """MariaDB's UUID, INET4 and INET6 travel in the binlog as BINARY(16) / BINARY(4): the stream gave their bytes
    while a snapshot gave their text, so a changed row reached the target as bytes (a user trial's gap)."""
    execute(capmy_url, "CREATE TABLE m (id INT PRIMARY KEY, u UUID, i4 INET4, i6 INET6)")
    cap = capture(capmy_url)
    try:
        start, _ = cap.current_position()
        execute(
            capmy_url,
            "INSERT INTO m VALUES (1, '123e4567-e89b-12d3-a456-426614174000', '192.168.0.1', '2001:db8::ff00:42:8329'),"
            " (2, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '0.0.0.0', '::ffff:10.0.0.1'),"
            " (3, '00000000-0000-0000-0000-000000000000', '255.255.255.255', '::'),"
            " (4, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '10.0.0.255', '::1'),"
            " (5, NULL, NULL, NULL), (6, '01234567-89ab-4def-8123-456789abcdef', '1.2.3.4', '2001:db8:0:0:1:0:0:1'),"
            " (7, '11111111-2222-3333-4444-555555555555', '8.8.8.8', '::10.0.0.1')",
            "UPDATE m SET u = 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6', i6 = 'fe80::1' WHERE id = 2",
        )
        table = cap.list_tables()[0]
        snapshot = {e.key[0]: e.after for chunk in cap.snapshot(table, None, 10) for e in chunk.as_events(table.key)}
        events, _ = collect(cap, start, 8)
        stream: dict[Any, Any] = {}
        for event in events:
            if isinstance(event, ChangeEvent):
                stream[event.key[0]] = event.after
    finally:
        cap.close()
    assert stream == snapshot
    assert snapshot[2] == {"id": 2, "u": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "i4": "0.0.0.0", "i6": "fe80::1"}
    assert snapshot[1]["i6"] == "2001:db8::ff00:42:8329" and snapshot[5] == {"id": 5, "u": None, "i4": None, "i6": None}


def test_ddl_is_published_as_schema_changes(capmy_url: str) -> None:
    execute(capmy_url, "CREATE TABLE a (id INT PRIMARY KEY, x INT, y INT)")
    cap = capture(capmy_url)
    statements = [
        "ALTER TABLE a ADD COLUMN z VARCHAR(10)",
        "ALTER TABLE a MODIFY x BIGINT",
        "ALTER TABLE a RENAME COLUMN y TO w",
        "ALTER TABLE a DROP COLUMN z",
        "CREATE TABLE b (id INT PRIMARY KEY)",
        "INSERT INTO b VALUES (7)",
        "TRUNCATE TABLE a",
        "RENAME TABLE b TO c",
        "DROP TABLE c",
    ]
    try:
        start, _ = cap.current_position()
        events = live(cap, start, capmy_url, statements)
    finally:
        cap.close()
    changes = [(e.table, e.change) if isinstance(e, SchemaChange) else (e.table, e.op) for e in events]
    db = capmy_url.rsplit("/", 1)[1]
    assert changes == [
        (f"{db}.a", "add_column"),
        (f"{db}.a", "alter_column"),
        (f"{db}.a", "rename_column"),
        (f"{db}.a", "drop_column"),
        (f"{db}.b", "create"),
        (f"{db}.b", "c"),
        (f"{db}.a", "t"),
        (f"{db}.b", "rename_table"),
        (f"{db}.c", "drop_table"),
    ]
    renamed = events[2]
    assert isinstance(renamed, SchemaChange) and renamed.renamed == {"y": "w"} and renamed.schema.version == 4
    widened = events[1]
    assert isinstance(widened, SchemaChange) and widened.schema.column("x") is not None
    assert widened.schema.column("x").type == "int64"  # type: ignore[union-attr]
    positions = [e.source.position for e in events]
    assert positions == sorted(positions)


def test_transactions_that_start_with_the_marker_table_are_skipped(capmy_url: str) -> None:
    db = capmy_url.rsplit("/", 1)[1]
    execute(capmy_url, "CREATE TABLE positions (id INT PRIMARY KEY)", "CREATE TABLE t (id INT PRIMARY KEY)")
    cap = capture(capmy_url, marker=f"{db}.positions")
    try:
        start, _ = cap.current_position()
        conn = mysql_connect(capmy_url)
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO positions VALUES (1)")
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("COMMIT")
            cur.execute("INSERT INTO t VALUES (3)")
        conn.close()
        events, batches = collect(cap, start, 1)
    finally:
        cap.close()
    assert [(e.op, e.key) for e in events] == [("c", [3])]
    assert sum(batch.skipped_echo for batch in batches) == 2
    assert [table.name for table in cap.list_tables()] == ["t"]


def test_a_marker_transaction_with_savepoints_is_skipped_whole_and_never_cut(capmy_url: str) -> None:
    """Apply writes SAVEPOINTs after its marker row; MariaDB logs them as QUERY events inside the transaction,
    which must neither end the echo transaction nor give a position to resume from inside it."""
    db = capmy_url.rsplit("/", 1)[1]
    execute(capmy_url, "CREATE TABLE positions (id INT PRIMARY KEY)", "CREATE TABLE t (id INT PRIMARY KEY)")
    cap = capture(capmy_url, marker=f"{db}.positions")
    try:
        start, _ = cap.current_position()
        conn = mysql_connect(capmy_url)
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO positions VALUES (1)")
            cur.execute("SAVEPOINT sluice_1")
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("RELEASE SAVEPOINT sluice_1")
            cur.execute("SAVEPOINT sluice_1")
            cur.execute("INSERT INTO t VALUES (3)")
            cur.execute("ROLLBACK TO SAVEPOINT sluice_1")
            cur.execute("INSERT INTO t VALUES (4)")
            cur.execute("COMMIT")
            cur.execute("SHOW MASTER STATUS")
            end = int(cur.fetchone()[1])
            cur.execute("INSERT INTO t VALUES (5)")
        conn.close()
        events, batches = collect(cap, start, 1)
        # Resuming from any position a batch reported (as a checkpoint would) never yields the echo.
        for position in {tuple(b.position) for b in batches}:
            again, _ = collect(cap, list(position), 1, max_batches=5)
            assert [e.key for e in again] in ([[5]], []), position
            assert not (position[0] == start[0] and start[1] < position[1] < end), position  # not inside it
    finally:
        cap.close()
    assert [(e.op, e.key) for e in events] == [("c", [5])]
    assert sum(batch.skipped_echo for batch in batches) == 3


def test_a_purged_binlog_raises_position_lost(capmy_url: str) -> None:
    cap = capture(capmy_url)
    try:
        position, _ = cap.current_position()
        with pytest.raises(PositionLost, match="--resnapshot"):
            next(iter(cap.stream([position[0] + 9000, 4, 0], [], 0.3)))
    finally:
        cap.close()


def test_a_second_dump_with_the_same_server_id_stops_the_first_with_a_terminal_error(capmy_url: str) -> None:
    cap = capture(capmy_url)
    first, second = BinlogConnection(cap.connect, 777_001, 1.0), BinlogConnection(cap.connect, 777_001, 1.0)
    try:
        (file, offset, _), _ = cap.current_position()
        first.open(cap.file_name(file), offset)
        second.open(cap.file_name(file), offset)
        with pytest.raises(SyncError, match=r"server_id 777001 .* `capture: \{server_id: N\}`") as raised:
            for _ in first.events():
                pass
        assert not raised.value.transient  # a retry would take the dump back from the other one, forever
    finally:
        first.close()
        second.close()
        cap.close()


def fake_server(master: tuple[str, int] | None, snapshot: tuple[str, int] | None) -> Any:
    """A ``query`` answering :meth:`MysqlCapture.current_position`'s statements: ``master``, ``SHOW MASTER STATUS``
    (None: no binlog); ``snapshot``, the ``binlog_snapshot_%`` status variables (None: none, as on MySQL)."""
    asked: list[str] = []

    def query(statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        asked.append(statement)
        if statement == "SHOW MASTER STATUS":
            return [(master[0], master[1], "", "")] if master else []
        if "binlog_snapshot" in statement:
            return [("Binlog_snapshot_file", snapshot[0]), ("Binlog_snapshot_position", str(snapshot[1]))] if snapshot else []
        return []

    query.asked = asked  # type: ignore[attr-defined]
    return query


def test_the_file_position_is_the_snapshots_binlog_point_not_the_binlog_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """MariaDB writes a transaction to the binlog before the engine commits it: the binlog's end can be past a
    transaction a snapshot started right after does not see yet, and a stream from there would skip it."""
    cap = capture("mysql://u:p@127.0.0.1:1/db")
    busy = fake_server(("binlog.000003", 1200), ("binlog.000003", 900))
    monkeypatch.setattr(cap, "query", busy)
    assert cap.current_position() == ([3, 900, 0], "binlog.000003:900")
    assert busy.asked[:3] == [
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'",
        "COMMIT",
    ]
    assert cap.file_name(4) == "binlog.000004"
    # MySQL has no binlog_snapshot_% status: the binlog's end
    monkeypatch.setattr(cap, "query", fake_server(("mysql-bin.000012", 1200), None))
    assert cap.current_position() == ([12, 1200, 0], "mysql-bin.000012:1200")
    # MariaDB without binlog gives an empty snapshot file, and SHOW MASTER STATUS nothing
    monkeypatch.setattr(cap, "query", fake_server(None, ("", 0)))
    with pytest.raises(SourceNotReady, match="no binlog"):
        cap.current_position()


def test_the_file_position_is_the_binlog_end_while_nothing_writes(capmy_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = capture(capmy_url)
    asked: list[str] = []
    query = cap.query

    def spy(statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        asked.append(statement)
        return query(statement, args)

    monkeypatch.setattr(cap, "query", spy)
    try:
        for _ in range(50):  # the server is shared: until no write came in between
            before = query("SHOW MASTER STATUS")[0][:2]
            _, text = cap.current_position()
            if query("SHOW MASTER STATUS")[0][:2] == before:
                break
        else:
            pytest.fail("the binlog never stood still")
        assert text == ":".join(str(value.decode() if isinstance(value, bytes) else value) for value in before)
        assert "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'" in asked and "SHOW MASTER STATUS" not in asked
    finally:
        cap.close()


def test_the_default_server_id_differs_by_host_database_sync_and_side() -> None:
    ids = {
        default_server_id("s", "src", "db", "laptop"),
        default_server_id("s", "src", "db", "staging"),
        default_server_id("s", "src", "other", "laptop"),
        default_server_id("t", "src", "db", "laptop"),
        default_server_id("s", "dst", "db", "laptop"),
    }
    assert len(ids) == 5 and all(1_000_000 <= i < 1_001_000_000 for i in ids)
    assert default_server_id("s", "src", "db", "laptop") == default_server_id("s", "src", "db", "laptop")


def test_check_passes_on_the_test_server_and_names_each_setting_to_change(capmy_url: str) -> None:
    cap = capture(capmy_url)
    try:
        assert cap.check() == []
    finally:
        cap.close()
    problems = server_problems(
        {"log_bin": "OFF", "binlog_format": "STATEMENT", "binlog_row_image": "MINIMAL", "binlog_row_metadata": "MINIMAL"},
        ["GRANT SELECT ON *.* TO `u`@`%`"],
    )
    assert [problem.split(" ")[0] for problem in problems] == [
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "the",
        "the",
    ]
    assert problems[4].endswith("GRANT REPLICATION SLAVE ON *.* TO `u`@`%`")  # the user SHOW GRANTS named
    assert problems[5].endswith("GRANT REPLICATION CLIENT ON *.* TO `u`@`%`")
    assert "MariaDB 10.5+" in server_problems({"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}, [])[0]


def test_snapshot_resumes_after_a_composite_key(capmy_url: str) -> None:
    execute(
        capmy_url,
        "CREATE TABLE k (a INT, b VARCHAR(5), v INT, PRIMARY KEY (a, b))",
        "INSERT INTO k VALUES (1,'x',1),(1,'y',2),(2,'a',3),(2,'b',4),(3,'a',5)",
    )
    cap = capture(capmy_url)
    try:
        table = cap.list_tables()[0]
        chunks = list(cap.snapshot(table, None, 2))
        assert [[e.key for e in c.as_events(table.key)] for c in chunks] == [
            [[1, "x"], [1, "y"]],
            [[2, "a"], [2, "b"]],
            [[3, "a"]],
        ]
        assert chunks[-1].done and not chunks[0].done
        resumed = list(cap.snapshot(table, chunks[0].last_key, 10))
        assert [e.key for c in resumed for e in c.as_events(table.key)] == [[2, "a"], [2, "b"], [3, "a"]]
    finally:
        cap.close()


def test_a_big_transaction_streams_in_batches_and_resumes_inside_it(capmy_url: str) -> None:
    execute(capmy_url, "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20))")
    cap = capture(capmy_url)
    try:
        start, _ = cap.current_position()
        execute(capmy_url, "INSERT INTO big SELECT seq, CONCAT('v', seq) FROM seq_1_to_200000")
        events, batches = collect(cap, start, 200_000)
        assert len(events) == 200_000 and len([b for b in batches if b.events]) >= 10
        assert [e.key[0] for e in events] == list(range(1, 200_001))
        middle = batches[3].position
        assert middle[2] > 0  # inside the transaction
        again = capture(capmy_url)  # a new process: resumes by reading the file from its start
        try:
            rest, _ = collect(again, middle, 200_000 - sum(len(b.events) for b in batches[:4]))
        finally:
            again.close()
        assert rest[0].key[0] == batches[4].events[0].key[0] and rest[-1].key[0] == 200_000
        assert len(rest) == 200_000 - sum(len(b.events) for b in batches[:4])
    finally:
        cap.close()


def test_a_table_map_gives_the_catalogs_columns_but_what_mariadb_stores_as_another_type(capmy_url: str) -> None:
    """:func:`map_columns`: every column of ``TYPES_TABLE`` as the catalog reads it (logical type, length, labels,
    nullability), but JSON (LONGTEXT in the binlog) and what the binlog does not carry (defaults, the catalog's
    spelling of the source type)."""
    execute(capmy_url, TYPES_TABLE)
    cap = capture(capmy_url)
    maps: list[TableMap] = []
    try:
        start, _ = cap.current_position()
        execute(capmy_url, "INSERT INTO types (id) VALUES (5)")
        stream = BinlogStream(cap, cap.list_tables(), 0.3)
        original = stream._table_map

        def spy(body: bytes) -> Any:
            tmap = parse_table_map(body)
            if tmap.table == "types":  # the binlog is the server's: other tests' tables too
                maps.append(tmap)
            return original(body)

        stream._table_map = spy  # type: ignore[method-assign]
        for _ in stream.run(start):
            if maps:
                break
        catalog = cap.list_tables()[0].columns
        rows = cap.query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS")
        mapped = map_columns(maps[0], stream.collations, {str(name): int(size) for name, size in rows})
    finally:
        cap.close()
    plain = [msgspec.structs.replace(c, source_type="", default=None) for c in catalog]
    expected = [msgspec.structs.replace(c, type="string") if c.type == "json" else c for c in plain]
    assert [msgspec.structs.replace(c, source_type="") for c in mapped] == expected
    assert [c.source_type for c in mapped if c.name in ("tu", "d2", "c", "vc", "tx", "bn", "e", "t2")] == [
        "tinyint unsigned", "decimal(12,2)", "char(5)", "varchar(300)", "text", "binary(4)", "enum('a','b','c')", "time(2)",
    ]  # fmt: skip


def test_rows_written_before_renames_made_while_stopped_are_published_under_the_schema_they_were_written_with(
    capmy_url: str,
) -> None:
    """A stream from before ``a -> b`` and ``b -> c`` made while capture was stopped, with the tables read after them:
    the TABLE_MAP of the row written under ``a`` publishes the schema with ``a`` first; the first rename waits for
    the second (``b`` is in no schema read), which publishes ``a -> c``; the row written under ``c`` follows with
    nothing more. Read live, the same statements publish what they always did, nothing for a TABLE_MAP."""
    execute(capmy_url, "CREATE TABLE r (id INT PRIMARY KEY, a VARCHAR(20), n INT)", "INSERT INTO r VALUES (1, 'x', 1)")
    statements = [
        "UPDATE r SET a = 'before' WHERE id = 1",
        "ALTER TABLE r CHANGE a b VARCHAR(20)",
        "ALTER TABLE r RENAME COLUMN b TO c",
        "UPDATE r SET c = 'after' WHERE id = 1",
    ]
    cap = capture(capmy_url)
    try:
        start, _ = cap.current_position()
        live_events = live(cap, start, capmy_url, statements)
        replayed, _ = collect(cap, start, 4)  # restarted from before them: the tables read now have ``c``
    finally:
        cap.close()

    def shape(events: list[Any]) -> list[Any]:
        return [
            (e.change, [c.name for c in e.schema.columns], e.renamed) if isinstance(e, SchemaChange) else (e.op, e.after)
            for e in events
        ]

    assert shape(replayed) == [
        ("drop_column", ["id", "a", "n"], {}),
        ("u", {"id": 1, "a": "before", "n": 1}),
        ("rename_column", ["id", "c", "n"], {"a": "c"}),
        ("u", {"id": 1, "c": "after", "n": 1}),
    ]
    first = replayed[0]
    assert isinstance(first, SchemaChange)
    assert first.schema.column("a") == Column("a", "string", source_type="varchar(20)", length=20)  # the TABLE_MAP's
    assert shape(live_events) == [
        ("u", {"id": 1, "a": "before", "n": 1}),
        ("rename_column", ["id", "b", "n"], {"a": "b"}),
        ("rename_column", ["id", "c", "n"], {"b": "c"}),
        ("u", {"id": 1, "c": "after", "n": 1}),
    ]
    positions = [e.source.position for e in replayed]
    assert positions == sorted(positions)
