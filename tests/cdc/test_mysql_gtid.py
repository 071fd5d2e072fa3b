"""MariaDB capture with ``position_mode: gtid`` against the throwaway MariaDB (and PostgreSQL for the syncs).

The tests that purge binlogs purge every file before the current one: on a shared server, a sync stopped at
that moment with a position in an older file resumes with PositionLost, so they are marked ``serial`` (scripts/test
runs them alone, after the tests that run in parallel).
"""

from __future__ import annotations

import itertools
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from tests.cdc.test_sync_e2e import equal, fill_tables, kill_9_while_writing, settings, sluice, snapshot_and_stream_while_writing

from servers_fixtures import mysql_connect
from sluice.bus.embedded import EmbeddedBus
from sluice.cdc.base import ChangeBatch, PositionLost, SyncError
from sluice.cdc.config import SyncSettings
from sluice.cdc.events import ChangeEvent
from sluice.cdc.mysql_capture import MysqlCapture
from sluice.cdc.mysql_gtid import (
    connect_state,
    gtid_position,
    gtid_problems,
    parse_gtid_list,
    snapshot_gtid,
    wrong_shape,
)
from sluice.cdc.mysql_stream import _GtidCursor
from sluice.cdc.plugins import MysqlCaptureOptions
from sluice.cdc.runtime import SyncRuntime

pytestmark = pytest.mark.mysql
GTID_OPTIONS = {"position_mode": "gtid"}


@pytest.fixture
def source(mysql_db_url: str) -> Iterator[tuple[str, Any]]:
    """``(url, connection)`` of a fresh database with tables ``emp`` and ``dept`` (300 rows each)."""
    conn = mysql_connect(mysql_db_url)
    fill_tables(conn)
    yield mysql_db_url, conn
    conn.close()


@pytest.fixture
def target(pg_db_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """``(url, connection)`` of a fresh PostgreSQL database."""
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        yield pg_db_url, conn


def gtid_capture(url: str) -> MysqlCapture:
    return MysqlCapture(url, MysqlCaptureOptions(position_mode="gtid"), f"gtid{uuid.uuid4().hex[:8]}", "src")


def execute(conn: Any, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def gtid_settings(name: str) -> SyncSettings:
    return settings(name, capture=GTID_OPTIONS)


def changes(cap: MysqlCapture, start: list[int], count: int) -> tuple[list[ChangeEvent], list[ChangeBatch]]:
    """Row changes streamed from ``start`` until ``count`` of them arrived (at most 100 batches of 0.3 s)."""
    events: list[ChangeEvent] = []
    batches = []
    for batch in cap.stream(start, cap.list_tables(), 0.3):
        batches.append(batch)
        events += [event for event in batch.events if isinstance(event, ChangeEvent)]
        if len(events) >= count or len(batches) >= 100:
            break
    return events, batches


def current_file(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        return str(cur.fetchone()[0])


def purge_before(conn: Any, current: str) -> None:
    """``PURGE BINARY LOGS TO current``, again until the server did (it keeps a file until its binlog
    checkpoint is written, shortly after a flush)."""
    with conn.cursor() as cur:
        deadline = time.monotonic() + 60
        while True:
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            if str(cur.fetchone()[0]) == current:
                return
            assert time.monotonic() < deadline, f"the server did not purge the binlogs before {current}"
            time.sleep(0.2)


# ----- check() ---------------------------------------------------------------------------------------------


def test_gtid_check_accepts_mariadb_and_names_what_to_change_elsewhere(source: tuple[str, Any]) -> None:
    gtid_url = source[0]
    cap = gtid_capture(gtid_url)
    try:
        assert cap.check() == []
    finally:
        cap.close()
    mysql = gtid_problems("8.0.36", None)
    assert len(mysql) == 1 and "needs MariaDB" in mysql[0] and "set position_mode: file" in mysql[0]
    several = gtid_problems("10.11.6-MariaDB-log", "0-1-42,7-2-3")
    assert len(several) == 1 and "2 replication domains" in several[0] and "0-1-42,7-2-3" in several[0]
    assert "set position_mode: file" in several[0] and "DELETE_DOMAIN_ID" in several[0]
    assert gtid_problems("10.11.6-MariaDB-log", "0-1-42") == gtid_problems("10.11.6-MariaDB-log", "") == []


def test_gtid_positions_order_and_resume_state() -> None:
    assert parse_gtid_list("0-1-42,3-2-7") == {0: (1, 42), 3: (2, 7)}
    after = gtid_position("0-1-42", 0)
    assert after == [42, 0, 0, 0, 1] and connect_state(after) == "0-1-42"
    assert gtid_position("", 5) == [0, 0, 0, 5, 0] and connect_state([0, 0, 0, 5, 0]) == ""
    # rows of the next transaction sit between the GTID before it and the one it gets
    assert [42, 0, 0, 0, 1] < [42, 1, 1, 0, 1] < [42, 2, 1, 0, 1] < [43, 0, 0, 0, 1]
    assert wrong_shape([7, 120, 0], gtid=True) is not None and wrong_shape(after, gtid=True) is None
    with pytest.raises(SyncError, match="2 replication domains"):
        gtid_position("0-1-42,1-1-3", 0)


def gtid_event(domain: int, seq: int) -> bytes:
    return seq.to_bytes(8, "little") + domain.to_bytes(4, "little") + b"\x00"


def test_gtid_stream_stops_on_another_domain_or_a_sequence_going_back() -> None:
    cursor = _GtidCursor([42, 0, 0, 0, 1])
    cursor.begin(gtid_event(0, 43), 1, "0-1-43")
    assert cursor.rows_event() == (42, 1) and cursor.commit() == [43, 0, 0, 0, 1]
    with pytest.raises(SyncError, match=r"domain 7.*position_mode: file"):
        cursor.begin(gtid_event(7, 44), 1, "7-1-44")
    with pytest.raises(SyncError, match="gtid_strict_mode=ON"):
        cursor.begin(gtid_event(0, 40), 2, "0-2-40")
    empty = _GtidCursor([0, 0, 0, 0, 0])
    empty.begin(gtid_event(3, 1), 1, "3-1-1")  # the empty state takes the first domain it sees
    assert empty.commit() == [1, 0, 0, 3, 1]


def fake_server(states: list[str], master: tuple[str, int], snapshot: tuple[str, int], at_point: str | None) -> Any:
    """A ``query`` function answering :func:`snapshot_gtid`'s statements; ``states``: successive ``@@gtid_binlog_pos``."""
    asked: list[str] = []

    def query(statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        asked.append(statement)
        if "gtid_binlog_pos" in statement:
            return [(states.pop(0) if len(states) > 1 else states[0],)]
        if statement == "SHOW MASTER STATUS":
            return [(master[0], master[1], "", "")]
        if "binlog_snapshot" in statement:
            return [("Binlog_snapshot_file", snapshot[0]), ("Binlog_snapshot_position", str(snapshot[1]))]
        if statement.startswith("SELECT BINLOG_GTID_POS"):
            assert args == snapshot
            return [(at_point,)]
        return []

    query.asked = asked  # type: ignore[attr-defined]
    return query


def test_gtid_snapshot_point_is_read_without_a_lock() -> None:
    quiet = fake_server(["0-1-7"], ("binlog.000003", 900), ("binlog.000003", 900), None)
    assert snapshot_gtid(quiet) == ("0-1-7", "binlog.000003", 900)
    assert not any("BINLOG_GTID_POS" in q or "LOCK" in q for q in quiet.asked)
    # commits in flight: the snapshot's point is behind the binlog's end, so the state comes from the file
    busy = fake_server(["0-1-7", "0-1-9"] * 3, ("binlog.000003", 1200), ("binlog.000003", 900), "0-1-6")
    assert snapshot_gtid(busy) == ("0-1-6", "binlog.000003", 900)
    assert sum("START TRANSACTION WITH CONSISTENT SNAPSHOT" in q for q in busy.asked) == 3
    with pytest.raises(SyncError, match="no GTID state"):
        snapshot_gtid(fake_server(["0-1-7", "0-1-8"] * 3, ("binlog.000003", 950), ("binlog.000003", 900), None))


# ----- capture -----------------------------------------------------------------------------------------------


def test_gtid_snapshot_chunks_carry_the_position_read_before_them(source: tuple[str, Any]) -> None:
    gtid_url, my = source
    cap = gtid_capture(gtid_url)
    try:
        position, text = cap.current_position()
        with my.cursor() as cur:
            cur.execute("SELECT @@global.gtid_binlog_pos")
            assert text.startswith(f"{cur.fetchone()[0]} (")
        assert len(position) == 5 and position[1:3] == [0, 0]
        table = next(t for t in cap.list_tables() if t.name == "emp")
        chunks = list(cap.snapshot(table, None, 120))
        assert [chunk.count for chunk in chunks] == [120, 120, 60]
        assert all(chunk.source is not None and chunk.source.position == position for chunk in chunks)
    finally:
        cap.close()


def test_gtid_stream_resumes_inside_a_big_transaction(source: tuple[str, Any]) -> None:
    gtid_url, my = source
    execute(my, "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20))")
    cap = gtid_capture(gtid_url)
    try:
        start, _ = cap.current_position()
        execute(my, "INSERT INTO big SELECT seq, CONCAT('v', seq) FROM seq_1_to_60000", "DELETE FROM big WHERE id <= 10")
        events, batches = changes(cap, start, 60_010)
        assert [e.key[0] for e in events] == list(range(1, 60_001)) + list(range(1, 11))
        assert all(a.source.position < b.source.position for a, b in itertools.pairwise(events))
        inside = next(b for b in batches if b.events and b.position[1] > 0)  # a batch ending inside the transaction
        done = sum(len(b.events) for b in batches[: batches.index(inside) + 1])
        again = gtid_capture(gtid_url)  # a new process: asks for the GTID before the transaction, skips what it had
        try:
            rest, _ = changes(again, inside.position, 60_010 - done)
        finally:
            again.close()
        assert [(e.op, e.key) for e in rest] == [(e.op, e.key) for e in events[done:]]
        assert [e.source.position for e in rest] == [e.source.position for e in events[done:]]
    finally:
        cap.close()


@pytest.mark.serial  # purges the shared server's binlogs: a capture elsewhere would lose its position
def test_gtid_resume_after_flushes_and_purges(source: tuple[str, Any]) -> None:
    gtid_url, my = source
    """Resume across several FLUSH BINARY LOGS; from the GTID a file starts at once the files before it are
    purged (a file position there would point into a purged file); PositionLost once a needed file is purged."""
    cap = gtid_capture(gtid_url)
    try:
        first, _ = cap.current_position()
        statements = []
        for i in range(4):
            statements += [f"UPDATE emp SET n = n + 1 WHERE id = {i}", "FLUSH BINARY LOGS"]
        execute(my, *statements, "INSERT INTO dept VALUES (1000, 'x', 1, 1)", "FLUSH BINARY LOGS")
        events, _ = changes(cap, first, 5)
        assert [(e.op, e.table.split(".")[1], e.key[0]) for e in events] == [("u", "emp", i) for i in range(4)] + [
            ("c", "dept", 1000)
        ]
        current = current_file(my)
        with my.cursor() as cur:
            cur.execute("SELECT BINLOG_GTID_POS(%s, 4), @@global.gtid_domain_id", (current,))
            state, domain = cur.fetchone()
        at_file_start = gtid_position(state, int(domain))
        purge_before(my, current)
        execute(my, "DELETE FROM dept WHERE id = 1000")
        again = gtid_capture(gtid_url)  # a new process, resuming from a GTID whose file is gone
        try:
            rest, _ = changes(again, at_file_start, 1)
            assert [(e.op, e.key[0]) for e in rest] == [("d", 1000)]
            with pytest.raises(PositionLost, match=r"purged.*--resnapshot"):
                changes(again, first, 1)
        finally:
            again.close()
    finally:
        cap.close()


def test_gtid_capture_refuses_a_position_of_the_other_mode(source: tuple[str, Any]) -> None:
    gtid_url = source[0]
    cap = gtid_capture(gtid_url)
    file_cap = MysqlCapture(gtid_url, MysqlCaptureOptions(), "gtidfile", "src")
    try:
        with pytest.raises(PositionLost, match="position_mode: file and capture now uses position_mode: gtid"):
            next(iter(cap.stream([3, 120, 0], [], 0.3)))
        gtid_start, _ = cap.current_position()
        with pytest.raises(PositionLost, match="--resnapshot"):
            next(iter(file_cap.stream(gtid_start, [], 0.3)))
    finally:
        cap.close()
        file_cap.close()


# ----- syncs -------------------------------------------------------------------------------------------------


def test_gtid_snapshot_then_stream_while_writing(
    source: tuple[str, Any], target: tuple[str, psycopg.Connection[Any]], tmp_path: Path
) -> None:
    (gtid_url, my), (pg_db_url, pg) = source, target
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    try:
        sync = gtid_settings(f"gtid_{uuid.uuid4().hex[:8]}")
        status = snapshot_and_stream_while_writing(bus, my, pg, {"my": gtid_url, "pg": pg_db_url}, tmp_path, sync)
    finally:
        bus.close()
    emp = next(t for t in status.tables if t.source_table.endswith(".emp"))
    assert emp.applied.get("snapshot", 0) > 0 and emp.applied.get("update", 0) > 0
    assert re.fullmatch(r"0-1-\d+ \(binlog\.\d+:\d+\)", emp.position), emp.position
    stored = pg.execute("SELECT position FROM sluice_cdc.positions WHERE table_name LIKE '%.emp'").fetchone()
    assert stored is not None and len(msgspec.json.decode(stored[0])) == 5


def test_gtid_kill_9_at_random_moments_then_restart_converges(
    source: tuple[str, Any], target: tuple[str, psycopg.Connection[Any]], tmp_path: Path
) -> None:
    (gtid_url, my), (pg_db_url, pg) = source, target
    (tmp_path / "sluice.yaml").write_text(
        f"connections:\n  my: {gtid_url}\n  pg: {pg_db_url}\n"
        f"syncs:\n  - {{name: gtid_{uuid.uuid4().hex[:8]}, source: my, target: pg, tables: [emp, dept], chunk_rows: 50,"
        " batch_rows: 200, capture: {position_mode: gtid}}\n"
    )
    # after each kill, the restart finds its place by GTID in another binlog file
    kill_9_while_writing(tmp_path, gtid_url, 23, random.Random(9), lambda: execute(my, "FLUSH BINARY LOGS"))
    done = sluice("sync", str(tmp_path), "--once")
    assert "0 table(s) in error" in done.stdout
    assert equal(my, pg)
    status = sluice("sync", "status", str(tmp_path), "--json")
    assert re.search(r'"position":"0-1-\d+ \(binlog\.\d+:\d+\)"', status.stdout), status.stdout


@pytest.mark.serial  # purges the shared server's binlogs: a capture elsewhere would lose its position
def test_gtid_purged_position_is_one_clear_error_then_resnapshot(
    source: tuple[str, Any], target: tuple[str, psycopg.Connection[Any]], tmp_path: Path
) -> None:
    (gtid_url, my), (pg_db_url, pg) = source, target
    urls = {"my": gtid_url, "pg": pg_db_url}
    sync = gtid_settings(f"gtid_{uuid.uuid4().hex[:8]}")
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    try:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        execute(my, "UPDATE emp SET name = 'gone' WHERE id = 1", "FLUSH BINARY LOGS")
        purge_before(my, current_file(my))
        with pytest.raises(PositionLost, match=f"sync '{sync.name}'.*--resnapshot"):
            SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        SyncRuntime(sync, urls, bus, tmp_path, once=True, resnapshot=True).run()
    finally:
        bus.close()
    assert equal(my, pg)
    assert pg.execute("SELECT name FROM public.emp WHERE id = 1").fetchone() == ("gone",)
