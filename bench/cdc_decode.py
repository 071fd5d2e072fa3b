"""Binlog row decoding speed: Sluice's generated decoders vs python-mysql-replication, on the same binlog, same run.

    python bench/cdc_decode.py [--rows 200000] [--url mysql://sluice:sluice@127.0.0.1:23306/sluice]

Writes ``--rows`` rows of a 6-column table (BIGINT key, VARCHAR, DECIMAL(12,2), DATETIME(6), INT, TEXT) in
transactions of 10,000 rows into a scratch database, then reads those binlog events back and prints rows/s
of: Sluice's decoder alone (rows events -> dicts, events already read), Sluice's whole stream
(:meth:`MysqlCapture.stream`: connection, decoding and ChangeEvents; with ``position_mode`` file and gtid), and
pymysqlreplication's
``BinLogStreamReader`` (if installed). Needs a MariaDB with a ROW binlog (``make servers-up``).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import pymysql

from sluice.cdc import mysql_rows
from sluice.cdc.events import ChangeEvent
from sluice.cdc.mysql_binlog import ROWS_EVENTS, TABLE_MAP, XID, BinlogConnection
from sluice.cdc.mysql_capture import MysqlCapture
from sluice.cdc.mysql_types import InvalidDates
from sluice.cdc.plugins import MysqlCaptureOptions
from sluice.connectors.mysql import connect_arguments

DATABASE = "sluice_bench_cdc_decode"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--url", default=os.environ.get("SLUICE_TEST_MYSQL_URL", "mysql://sluice:sluice@127.0.0.1:23306/sluice"))
    args = parser.parse_args()
    connect = connect_arguments(args.url)
    connect.pop("database", None)
    conn = pymysql.connect(autocommit=True, **connect)
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    cur.execute(f"USE {DATABASE}")
    cur.execute(
        f"CREATE TABLE {DATABASE}.t (id BIGINT PRIMARY KEY, name VARCHAR(64), amount DECIMAL(12,2), ts DATETIME(6),"
        " qty INT, note TEXT)"
    )
    url = args.url.rsplit("/", 1)[0] + "/" + DATABASE
    capture = MysqlCapture(url, MysqlCaptureOptions(server_id=4_200_001), "bench", "src", None)
    (file_no, start, _), _ = capture.current_position()
    log_file = capture.file_name(file_no)
    by_gtid = MysqlCapture(url, MysqlCaptureOptions(server_id=4_200_003, position_mode="gtid"), "bench", "src", None)
    gtid_start, _ = by_gtid.current_position()
    for first in range(0, args.rows, 10_000):
        last = min(first + 10_000, args.rows)
        cur.execute(
            f"INSERT INTO {DATABASE}.t SELECT seq, CONCAT('name', seq), seq / 100, NOW(6), MOD(seq, 1000), REPEAT('x', 40)"
            f" FROM seq_{first + 1}_to_{last}"
        )
    (end_file, end, _), _ = capture.current_position()
    print(f"wrote {args.rows} rows; binlog {log_file} {start}..{end}")

    events = read_events(capture, log_file, start, (end_file, end))
    print_rate("sluice decoder (events in memory)", *decode_only(capture, events))
    print_rate("sluice stream (connection + decode + events)", *stream_all(capture, [file_no, start, 0], args.rows))
    print_rate("sluice stream, position_mode: gtid", *stream_all(by_gtid, gtid_start, args.rows))
    by_gtid.close()
    try:
        print_rate("pymysqlreplication BinLogStreamReader", *replication(connect, log_file, start))
    except ImportError:
        print("pymysqlreplication is not installed: pip install mysql-replication")
    capture.close()
    cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    conn.close()


def read_events(capture: MysqlCapture, log_file: str, start: int, stop: tuple[int, int]) -> list[tuple[int, bytes]]:
    binlog = BinlogConnection(capture.connect, capture.server_id, 1.0)
    binlog.open(log_file, start)
    out = []
    file_no = stop[0]
    try:
        for kind, _ts, _server, end, body in binlog.events():
            if kind in (TABLE_MAP, *ROWS_EVENTS):
                out.append((kind, body))
            if kind == XID and end >= stop[1] and log_file.endswith(f"{file_no:06d}"):
                break
    finally:
        binlog.close()
    return out


def decode_only(capture: MysqlCapture, events: list[tuple[int, bytes]]) -> tuple[int, float]:
    collations = {
        int(i): name.decode() if isinstance(name, bytes) else str(name)
        for i, name in capture.query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
    }
    decoders: dict[bytes, Any] = {}
    current = None
    rows = 0
    began = time.perf_counter()
    for kind, body in events:
        if kind == TABLE_MAP:
            key = body[:6] + body[8:]
            current = decoders.get(key)
            if current is None:
                tmap = mysql_rows.parse_table_map(body)
                current = decoders[key] = (
                    mysql_rows.compile_rows(tmap, collations, InvalidDates(), False) if tmap.database == DATABASE else None
                )
        elif current is not None:
            count, p = mysql_rows.packed_int(body, 8)
            rows += len(current(body, p + (count + 7) // 8, len(body)))
    return rows, time.perf_counter() - began


def stream_all(capture: MysqlCapture, start: list[int], total: int) -> tuple[int, float]:
    tables = capture.list_tables()
    rows = 0
    began = time.perf_counter()
    for batch in capture.stream(start, tables, 2.0):
        rows += sum(1 for event in batch.events if isinstance(event, ChangeEvent) and event.op == "c")
        if rows >= total:
            break
    return rows, time.perf_counter() - began


def replication(connect: dict[str, Any], log_file: str, start: int) -> tuple[int, float]:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import WriteRowsEvent

    settings = {"host": connect["host"], "port": connect["port"], "user": connect["user"], "passwd": connect["password"]}
    reader = BinLogStreamReader(
        connection_settings=settings,
        server_id=4_200_002,
        log_file=log_file,
        log_pos=start,
        resume_stream=True,
        blocking=False,
        only_events=[WriteRowsEvent],
        only_schemas=[DATABASE],
    )
    rows = 0
    began = time.perf_counter()
    for event in reader:
        rows += len(event.rows)
    elapsed = time.perf_counter() - began
    reader.close()
    return rows, elapsed


def print_rate(label: str, rows: int, seconds: float) -> None:
    print(f"{label:48s} {rows:>9d} rows in {seconds:6.2f} s = {rows / seconds:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
