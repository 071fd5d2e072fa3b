"""PostgreSQL capture against the throwaway server: types, TOAST, keys, truncate, DDL, echo, heartbeat, lifecycle."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from sluice.cdc.base import ChangeBatch, PositionLost
from sluice.cdc.events import ChangeEvent, Event, Position, SchemaChange, TableSchema
from sluice.cdc.pg_capture import PostgresCapture
from sluice.cdc.plugins import PostgresCaptureOptions

pytestmark = pytest.mark.postgres


def _slot() -> str:
    return f"cappg_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def db(pg_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A writer connection to a fresh database (with an ``app`` schema), in an odd session time zone."""
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        conn.execute("CREATE SCHEMA app")
        yield conn


@pytest.fixture
def make_capture(pg_db_url: str) -> Iterator[Callable[..., PostgresCapture]]:
    """Builds captures on the test database; drops their slots and publications afterwards (slots retain WAL)."""
    made: list[PostgresCapture] = []

    def make(marker_table: str | None = None, **options: Any) -> PostgresCapture:
        capture = PostgresCapture(
            pg_db_url, PostgresCaptureOptions(slot=_slot(), **options), "s", "pg", marker_table=marker_table
        )
        made.append(capture)
        return capture

    yield make
    for capture in made:
        try:
            capture.drop()
        finally:
            capture.close()


def _table(capture: PostgresCapture, name: str) -> TableSchema:
    return next(t for t in capture.list_tables() if t.qualified == name)


def collect(
    capture: PostgresCapture,
    start: Position,
    tables: list[TableSchema],
    done: Callable[[list[Event]], bool],
    timeout_s: float = 15.0,
    on_batch: Callable[[ChangeBatch], None] | None = None,
    ack: bool = True,
) -> list[Event]:
    """Stream from ``start`` until ``done(events)``; acknowledges each batch like the runtime does."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    stream = capture.stream(start, tables, max_wait_s=0.2)
    try:
        for batch in stream:
            events.extend(batch.events)
            if on_batch is not None:
                on_batch(batch)
            if ack:
                capture.acknowledge(batch.position)
            if done(events):
                return events
            assert time.monotonic() < deadline, f"timed out with {len(events)} events"
    finally:
        stream.close()
    raise AssertionError("stream ended")


def changes(events: list[Event]) -> list[ChangeEvent]:
    return [e for e in events if isinstance(e, ChangeEvent)]


TYPES_TABLE = """
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.posint AS integer CHECK (VALUE > 0);
CREATE TABLE app.types (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, n numeric(12,2), nn numeric, f4 real, f8 double precision,
  t text, vc varchar(10), ch char(3), ba bytea, b boolean, bt bit(4), d date, tm time(3), ts timestamp(3),
  tz timestamptz, u uuid, j jsonb, js json, m app.mood, arr integer[], iv interval, dm app.posint)
"""
TYPES_ROWS = """
INSERT INTO app.types VALUES
 (1, -32768, 2147483647, 1234567890.12, 'NaN', 1.5, 'Infinity', 'héllo 🙂', 'a"b\\c', 'ab', '\\x00ff10', true, B'1010',
  '2024-02-29', '23:59:59.123', '2024-01-02 03:04:05.123', '2024-01-02 06:34:05.123456+05:30',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2.50]}', '{ "x" : 1 }', 'happy', '{1,2}', '1 day 02:00:00', 7),
 (2, null, null, -0.01, 123456789012345678901234567890.123456789, null, 0.1, '', null, null, '\\x', false, B'0000',
  'infinity', null, '-infinity', 'infinity', null, 'null', '"s"', null, '{}', null, null),
 (3, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
  null, null, null)
"""


def test_every_type_reads_the_same_in_snapshot_and_stream(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute(TYPES_TABLE)
    capture = make_capture()
    assert capture.check() == []
    table = _table(capture, "app.types")
    assert {c.name: c.type for c in table.columns} == {
        "id": "int64", "i2": "int16", "i4": "int32", "n": "decimal(12,2)", "nn": "decimal", "f4": "float32",
        "f8": "float64", "t": "string", "vc": "string", "ch": "string", "ba": "bytes", "b": "bool", "bt": "bit(4)",
        "d": "date", "tm": "time(3)", "ts": "datetime(3)", "tz": "timestamp(6)", "u": "uuid", "j": "json", "js": "json",
        "m": "enum", "arr": "string", "iv": "string", "dm": "int32",
    }  # fmt: skip
    assert table.key == ["id"] and table.column("m") is not None and table.column("m").labels == ["sad", "ok", "happy"]  # type: ignore[union-attr]
    start, _ = capture.current_position()
    db.execute(TYPES_ROWS)
    chunks = list(capture.snapshot(table, None, 2))
    snapshot = [e for chunk in chunks for e in chunk.as_events(table.key)]
    batches: list[ChangeBatch] = []
    streamed = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 3, on_batch=batches.append))
    # The stream counts fewer: wal2json already writes NaN and Infinity numbers as null, which are then not told apart.
    assert sum(chunk.invalid_dates for chunk in chunks) == 5
    invalid = sum(batch.invalid_dates for batch in batches)
    assert invalid == 3  # infinity date, -infinity timestamp, infinity timestamptz
    assert sum(batch.invalid_dates_by_table.get("app.types", 0) for batch in batches) == invalid
    assert {name for batch in batches for name in batch.invalid_dates_by_table} == {"app.types"}
    assert [e.op for e in snapshot] == ["r"] * 3 and [e.op for e in streamed] == ["c"] * 3
    assert [e.after for e in snapshot] == [e.after for e in streamed]
    row = snapshot[0].after
    assert row is not None
    assert row["n"] == "1234567890.12" and row["nn"] is None and row["f8"] is None and row["f4"] == 1.5
    assert row["t"] == "héllo 🙂" and row["vc"] == 'a"b\\c' and row["ch"] == "ab " and row["ba"] == b"\x00\xff\x10"
    assert row["bt"] == 10 and row["b"] is True and row["d"] == "2024-02-29" and row["tm"] == "23:59:59.123"
    assert row["ts"] == "2024-01-02 03:04:05.123"  # wall clock, whatever the time zones
    assert row["tz"] == 1704157445123456  # the instant 2024-01-02 01:04:05.123456 UTC
    assert row["j"] == '{"a": [1, 2.50], "b": 1}' and row["js"] == '{ "x" : 1 }' and row["m"] == "happy"
    assert row["arr"] == "{1,2}" and row["iv"] == "1 day 02:00:00" and row["dm"] == 7 and row["i2"] == -32768
    second = snapshot[1].after
    assert second is not None
    assert second["nn"] == "123456789012345678901234567890.123456789" and second["n"] == "-0.01"
    assert second["d"] is None and second["tz"] is None and second["ba"] == b"" and second["bt"] == 0
    assert all(v is None for k, v in (snapshot[2].after or {}).items() if k != "id")
    assert [e.key for e in streamed] == [[1], [2], [3]]


def test_snapshot_resumes_after_a_key(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.k (a text, b int, v text, PRIMARY KEY (a, b))")
    db.execute("INSERT INTO app.k SELECT chr(97 + g % 3), g, 'v' || g FROM generate_series(1, 10) g")
    capture = make_capture()
    table = _table(capture, "app.k")
    chunks = list(capture.snapshot(table, None, 4))
    assert [c.count for c in chunks] == [4, 4, 2] and chunks[-1].done and not chunks[0].done
    keys = [e.key for c in chunks for e in c.as_events(table.key)]
    assert keys == sorted(keys) and len(keys) == 10
    resumed = [e.key for c in capture.snapshot(table, chunks[0].last_key, 4) for e in c.as_events(table.key)]
    assert resumed == keys[4:]


def test_update_leaving_a_toasted_value_alone_does_not_null_it(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.doc (id int PRIMARY KEY, body text, n int)")
    db.execute("INSERT INTO app.doc SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 1000) g")  # 32 kB
    capture = make_capture()
    table = _table(capture, "app.doc")
    start, _ = capture.current_position()
    db.execute("UPDATE app.doc SET n = 5 WHERE id = 1")
    db.execute("UPDATE app.doc SET body = 'short' WHERE id = 1")
    events = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 2))
    assert events[0].op == "u" and events[0].after == {"id": 1, "n": 5} and events[0].unchanged == ["body"]
    assert events[1].after == {"id": 1, "body": "short", "n": 5} and events[1].unchanged == []


def test_key_change_delete_and_truncate(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.p (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO app.p VALUES (1, 'a'), (2, 'b')")
    capture = make_capture()
    table = _table(capture, "app.p")
    start, _ = capture.current_position()
    db.execute("UPDATE app.p SET id = 10 WHERE id = 1")
    db.execute("DELETE FROM app.p WHERE id = 2")
    db.execute("TRUNCATE app.p")
    events = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 3))
    update, delete, truncate = events
    assert update.op == "u" and update.key == [10] and update.before == {"id": 1} and update.after == {"id": 10, "v": "a"}
    assert delete.op == "d" and delete.key == [2] and delete.before == {"id": 2} and delete.after is None
    assert truncate.op == "t" and truncate.table == "app.p"
    positions = [e.source.position for e in events]
    assert positions == sorted(positions) and len({tuple(p) for p in positions}) == 3


def test_schema_changes_are_detected_from_the_columns(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.e (id int PRIMARY KEY, a text, n int)")
    capture = make_capture()
    table = _table(capture, "app.e")
    start, _ = capture.current_position()
    db.execute("INSERT INTO app.e VALUES (1, 'x', 1)")
    db.execute("ALTER TABLE app.e ADD COLUMN d date")
    db.execute("INSERT INTO app.e VALUES (2, 'y', 2, '2024-01-01')")
    db.execute("ALTER TABLE app.e RENAME COLUMN a TO b")
    db.execute("INSERT INTO app.e VALUES (3, 'z', 3, null)")
    db.execute("ALTER TABLE app.e ALTER COLUMN n TYPE bigint")
    db.execute("UPDATE app.e SET n = 4 WHERE id = 3")
    db.execute("ALTER TABLE app.e DROP COLUMN d")
    db.execute("INSERT INTO app.e VALUES (5, 'w', 5)")
    db.execute("CREATE TABLE app.fresh (id int PRIMARY KEY)")
    db.execute("INSERT INTO app.fresh VALUES (1)")
    events = collect(capture, start, [table], lambda ev: len(changes(ev)) >= 6)
    schema = [(e.table, e.change, e.renamed, e.schema.version) for e in events if isinstance(e, SchemaChange)]
    assert schema == [
        ("app.e", "add_column", {}, 2),
        ("app.e", "rename_column", {"a": "b"}, 3),
        ("app.e", "alter_column", {}, 4),
        ("app.e", "drop_column", {}, 5),
        ("app.fresh", "create", {}, 1),
    ]
    rows = changes(events)
    assert rows[1].after == {"id": 2, "a": "y", "n": 2, "d": "2024-01-01"} and rows[1].schema_version == 2
    assert rows[2].after == {"id": 3, "b": "z", "n": 3, "d": None}
    assert rows[4].after == {"id": 5, "b": "w", "n": 5} and rows[5].table == "app.fresh"


def test_transactions_started_by_the_marker_table_are_skipped(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.t (id int PRIMARY KEY)")
    db.execute("CREATE SCHEMA sluice_cdc")
    db.execute("CREATE TABLE sluice_cdc.positions (sync text, side text, table_name text, position text)")
    capture = make_capture(marker_table="sluice_cdc.positions")
    assert [t.qualified for t in capture.list_tables()] == ["app.t"]
    table = _table(capture, "app.t")
    start, _ = capture.current_position()
    with db.transaction():
        db.execute("INSERT INTO sluice_cdc.positions VALUES ('s', 'other', 'app.t', '[1]')")
        db.execute("INSERT INTO app.t VALUES (1), (2)")
    db.execute("INSERT INTO app.t VALUES (3)")
    echo: list[int] = []
    events = collect(capture, start, [table], lambda ev: len(changes(ev)) >= 1, on_batch=lambda b: echo.append(b.skipped_echo))
    assert [e.key for e in changes(events)] == [[3]] and sum(echo) == 3


def test_resuming_inside_a_marker_transaction_still_skips_the_rest_of_it(db: psycopg.Connection[Any], make_capture: Any) -> None:
    """A checkpoint taken inside an echo transaction: the resumed stream reads that transaction again from
    its BEGIN (the slot is never advanced into a transaction), so its first row still marks it as echo."""
    db.execute("CREATE TABLE app.t (id int PRIMARY KEY)")
    db.execute("CREATE SCHEMA sluice_cdc")
    db.execute("CREATE TABLE sluice_cdc.positions (sync text, side text, table_name text, position text)")
    capture = make_capture(marker_table="sluice_cdc.positions")
    table = _table(capture, "app.t")
    start, _ = capture.current_position()
    with db.transaction():
        db.execute("INSERT INTO sluice_cdc.positions VALUES ('s', 'other', 'app.t', '[1]')")
        db.execute("INSERT INTO app.t SELECT generate_series(1, 5)")
    db.execute("INSERT INTO app.t VALUES (6)")
    first = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 1, ack=False))
    assert [e.key for e in first] == [[6]]
    assert capture._decoder is not None
    echo_commit = min(capture._decoder.complete)
    for inside in ([echo_commit, 1], [echo_commit, 3]):
        capture.acknowledge(inside)  # as the runtime does with a checkpoint's position
        again = changes(collect(capture, inside, [table], lambda ev: len(changes(ev)) >= 1, ack=False))
        assert [e.key for e in again] == [[6]], inside


def test_replica_identity_full_is_set_before_the_first_position(db: psycopg.Connection[Any], make_capture: Any) -> None:
    """An update made after the start position but before any stream opened still has its whole old row."""
    db.execute("CREATE TABLE app.w (id int PRIMARY KEY, name text, n int)")
    db.execute("INSERT INTO app.w VALUES (1, 'a', 1)")
    capture = make_capture(replica_identity_full=True)
    table = _table(capture, "app.w")
    capture.prepare([table])
    start, _ = capture.current_position()
    identity = db.execute("SELECT relreplident FROM pg_class WHERE oid = 'app.w'::regclass").fetchone()
    assert identity == ("f",)
    db.execute("UPDATE app.w SET name = 'b' WHERE id = 1")
    update = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 1))[0]
    assert update.before == {"id": 1, "name": "a", "n": 1}


def test_a_table_without_key_gets_replica_identity_full(db: psycopg.Connection[Any], make_capture: Any) -> None:
    """Without it, PostgreSQL refuses the application's UPDATEs on a published table, and logs no old row."""
    db.execute("CREATE TABLE app.nokey (a int, b text)")
    db.execute("CREATE TABLE app.keyed (id int PRIMARY KEY)")
    db.execute("INSERT INTO app.nokey VALUES (1, 'x'), (2, 'y')")
    capture = make_capture()
    tables = [_table(capture, "app.nokey"), _table(capture, "app.keyed")]
    capture.prepare(tables)
    start, _ = capture.current_position()
    db.execute("UPDATE app.nokey SET b = 'z' WHERE a = 2")  # refused if published without a replica identity
    identities = db.execute("SELECT relname::text, relreplident::text FROM pg_class WHERE relname IN ('nokey', 'keyed')")
    assert dict(identities.fetchall()) == {"nokey": "f", "keyed": "d"}
    update = changes(collect(capture, start, tables, lambda ev: len(changes(ev)) >= 1))[0]
    assert update.op == "u" and update.before == {"a": 2, "b": "y"} and update.after == {"a": 2, "b": "z"}


def test_heartbeat_keeps_the_slot_moving_while_tables_are_idle(
    db: psycopg.Connection[Any], make_capture: Any, pg_url: str
) -> None:
    db.execute("CREATE TABLE app.idle (id int PRIMARY KEY)")
    capture = make_capture()
    table = _table(capture, "app.idle")
    start, _ = capture.current_position()
    slot_lsn = "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = %s"
    first = db.execute(slot_lsn, [capture.slot]).fetchone()
    other = f"cappg_other_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as elsewhere:  # WAL written in another database
        elsewhere.execute(f"CREATE TABLE {other} (id int, v text)")
        try:
            elsewhere.execute(f"INSERT INTO {other} SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
            written = elsewhere.execute("SELECT pg_current_wal_lsn()").fetchone()
            assert written is not None and first is not None and written[0] > first[0]

            def moved(_: list[Event]) -> bool:
                now = db.execute(slot_lsn, [capture.slot]).fetchone()
                return now is not None and now[0] >= written[0]

            collect(capture, start, [table], moved, timeout_s=20)
        finally:
            elsewhere.execute(f"DROP TABLE {other}")


def test_the_end_position_comes_after_a_commit_that_just_returned(db: psycopg.Connection[Any], make_capture: Any) -> None:
    """``--once`` streams until a batch's position reaches ``end_position()``. With ``synchronous_commit = off`` a
    commit that returned may not be written yet, so ``pg_current_wal_lsn()`` (``current_position``) is behind it and a
    run that stopped there applied nothing; the end position is past it, and already flushed (peek decodes the flushed
    WAL only), so the stream gets there without waiting for the WAL writer."""
    db.execute("SET synchronous_commit = off")
    db.execute("CREATE TABLE app.t (id int PRIMARY KEY, v int)")
    db.execute("INSERT INTO app.t VALUES (1, 0)")
    capture = make_capture()
    table = _table(capture, "app.t")
    capture.prepare([table])
    start, _ = capture.current_position()
    for n in range(1, 11):
        db.execute("UPDATE app.t SET v = %s WHERE id = 1", [n])
        end, text = capture.end_position()
        flushed = db.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", [text]).fetchone()
        assert flushed == (True,)
        events: list[Event] = []
        deadline = time.monotonic() + 15
        stream = capture.stream(start, [table], max_wait_s=0.2)
        try:
            for batch in stream:  # as the capture loop of a --once run does
                events += batch.events
                capture.acknowledge(batch.position)
                if batch.position >= end:
                    start = batch.position
                    break
                assert time.monotonic() < deadline, f"the end position {text} was not reached"
        finally:
            stream.close()
        assert [(e.op, e.after) for e in changes(events)] == [("u", {"id": 1, "v": n})]


class PositionThread(threading.Thread):
    """``capture.current_position()`` in a thread: its result or error, and how long it took."""

    def __init__(self, capture: PostgresCapture) -> None:
        super().__init__(daemon=True)
        self.capture = capture
        self.position: tuple[Position, str] | None = None
        self.error: BaseException | None = None
        self.took_s = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.position = self.capture.current_position()
        except BaseException as exc:  # handed to the test
            self.error = exc
        self.took_s = time.monotonic() - started


@pytest.fixture
def running_writer(pg_db_url: str, db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose transaction wrote a row of ``app.w`` (so it has an xid) and stays open; closed (rolled
    back if still open) afterwards."""
    db.execute("CREATE TABLE app.w (id int PRIMARY KEY)")
    writer = psycopg.connect(pg_db_url)  # not autocommit
    try:
        yield writer
    finally:
        writer.close()


@pytest.mark.parametrize("listed", [False, True], ids=["newest", "listed"])
def test_the_position_waits_for_a_transaction_running_when_it_was_read(
    running_writer: psycopg.Connection[Any], db: psycopg.Connection[Any], make_capture: Any, listed: bool
) -> None:
    """A transaction whose commit record is at or before ``pg_current_wal_lsn()`` but that has not left the ProcArray
    yet is neither in a snapshot taken right after nor in the stream from that position: ``current_position``
    returns only once the transactions running when it read the position have ended. Newest: no later transaction
    id ended, so the writer is at or past the snapshot's xmax (``pg_snapshot_xip`` does not list it); listed: a
    later one ended, so it is listed."""
    capture = make_capture()
    capture.VISIBILITY_WAIT_S = 30.0
    capture.ensure_slot()  # creating a slot waits for running transactions itself
    running_writer.execute("INSERT INTO app.w VALUES (1)")
    if listed:
        db.execute("SELECT pg_current_xact_id()")  # a later id, ended
    reader = PositionThread(capture)
    reader.start()
    try:
        reader.join(0.3)
        assert reader.is_alive(), "current_position returned while a transaction with an xid was running"
        running_writer.commit()
        reader.join(60)
        assert not reader.is_alive() and reader.error is None and reader.position is not None
    finally:
        running_writer.rollback()
        reader.join(60)
    chunks = list(capture.snapshot(_table(capture, "app.w"), None, 100))
    assert [row for chunk in chunks for row in chunk.rows] == [[1]]


def test_the_position_waits_for_running_transactions_at_most_the_bound(
    running_writer: psycopg.Connection[Any], make_capture: Any, caplog: pytest.LogCaptureFixture
) -> None:
    capture = make_capture()
    capture.VISIBILITY_WAIT_S = 0.2
    capture.ensure_slot()
    running_writer.execute("INSERT INTO app.w VALUES (1)")
    reader = PositionThread(capture)
    try:
        with caplog.at_level(logging.INFO, logger="sluice.cdc.capture"):
            reader.start()
            reader.join(60)
        assert not reader.is_alive() and reader.error is None and reader.position is not None
        assert reader.took_s >= 0.2
        assert re.search(r"\d+ of \d+ transactions running when the position was read still run", caplog.text)
    finally:
        running_writer.rollback()
        reader.join(60)


def test_a_big_transaction_comes_in_several_bounded_batches(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.big (id int PRIMARY KEY, v text)")
    capture = make_capture()
    table = _table(capture, "app.big")
    start, _ = capture.current_position()
    rows = 200_000
    db.execute(f"INSERT INTO app.big SELECT g, md5(g::text) FROM generate_series(1, {rows}) g")
    sizes: list[int] = []
    positions: list[Position] = []
    count = 0

    def done(events: list[Event]) -> bool:
        nonlocal count
        count += len(events)
        events.clear()  # the consumer publishes and forgets
        return count >= rows

    collect(
        capture,
        start,
        [table],
        done,
        timeout_s=60,
        on_batch=lambda b: (sizes.append(len(b.events)), positions.append(b.position)),
    )
    # the transaction is handed over in batches of at most BATCH_EVENTS (read from a server-side cursor),
    # never held whole: bench/cdc_pg_capture.py reports the peak RSS for a million rows
    assert count == rows and len([s for s in sizes if s]) >= rows // capture.BATCH_EVENTS
    assert max(sizes) <= capture.BATCH_EVENTS and positions == sorted(positions)


def test_resume_inside_a_transaction_yields_only_the_rest(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.r (id int PRIMARY KEY)")
    capture = make_capture()
    table = _table(capture, "app.r")
    start, _ = capture.current_position()
    db.execute("INSERT INTO app.r SELECT generate_series(1, 10)")
    first = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 10, ack=False))
    middle = first[3].source.position
    again = changes(collect(capture, middle, [table], lambda ev: len(changes(ev)) >= 6))
    assert [e.key for e in again] == [[i] for i in range(5, 11)]


def test_lost_positions_and_drop(db: psycopg.Connection[Any], make_capture: Any) -> None:
    db.execute("CREATE TABLE app.l (id int PRIMARY KEY)")
    capture = make_capture()
    table = _table(capture, "app.l")
    start, _ = capture.current_position()
    db.execute("INSERT INTO app.l VALUES (1)")
    events = changes(collect(capture, start, [table], lambda ev: len(changes(ev)) >= 1))
    capture.acknowledge(events[0].source.position)
    with pytest.raises(PositionLost, match="--resnapshot"):
        next(capture.stream(start, [table], 0.2))  # before the acknowledged position: gone
    capture.drop()
    slots = db.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [capture.slot]).fetchone()
    publications = db.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s", [capture.publication]).fetchone()
    assert slots == (0,) and publications == (0,)
    with pytest.raises(PositionLost, match=r"does not exist.*--resnapshot"):
        next(capture.stream(events[0].source.position, [table], 0.2))
    capture.prepare([table])  # a restart creates the slot again, at the current position
    try:
        with pytest.raises(PositionLost, match=r"did not exist \(dropped\?\) and was created again.*--resnapshot") as lost:
            next(capture.stream(events[0].source.position, [table], 0.2))
        assert "advanced" not in str(lost.value)
    finally:
        capture.drop()


def test_check_names_the_missing_privilege(db: psycopg.Connection[Any], make_capture: Any, pg_db_url: str) -> None:
    role = f"cappg_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        url = pg_db_url.replace("postgres@", f"{role}@", 1)
        capture = PostgresCapture(url, PostgresCaptureOptions(slot=_slot()), "s", "pg", None)
        try:
            problems = capture.check()
        finally:
            capture.close()
        assert problems == [f"role {role} has neither REPLICATION nor superuser: run ALTER ROLE {role} WITH REPLICATION"]
    finally:
        db.execute(f"DROP ROLE {role}")
