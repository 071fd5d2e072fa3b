"""A MySQL/MariaDB binlog dump connection over PyMySQL: events as ``(type, timestamp, server id, end position, body)``.

The connection asks for checksummed events (``SET @master_binlog_checksum = @@global.binlog_checksum``),
announces MariaDB's GTID-aware replica (``SET @mariadb_slave_capability = 4``) and a heartbeat period
(``SET @master_heartbeat_period``, nanoseconds) so an idle server still sends a HEARTBEAT event, then sends
``COM_BINLOG_DUMP`` (file, position, replica server id). Each packet is one event; the CRC32 at its end is
checked and removed. The handshake follows python-mysql-replication (Apache-2.0, ``binlogstream.py``)
and MariaDB's "COM_BINLOG_DUMP" documentation.

A dump by GTID (MariaDB) is what a MariaDB replica with ``MASTER_USE_GTID`` sends: ``SET @slave_connect_state``
(the GTID list to start after), ``SET @slave_gtid_strict_mode = 1`` (a GTID missing from the binlog is an
error, not a silent start elsewhere), ``SET @slave_gtid_ignore_duplicates = 0``, then ``COM_BINLOG_DUMP``
with an empty file name (MariaDB's "GTID" and "COM_BINLOG_DUMP" pages; vitess and go-mysql send the same).
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pymysql

from sluice.cdc.base import PositionLost, SyncError

COM_BINLOG_DUMP = 0x12
SAME_SERVER_ID = 4052  # ER_SLAVE_SAME_ID (MariaDB): a newer dump registered with this server id
HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, event size, end position, flags
HEADER_SIZE = 19

# Event types.
QUERY, STOP, ROTATE, FORMAT_DESCRIPTION, XID, TABLE_MAP, HEARTBEAT = 2, 3, 4, 15, 16, 19, 27
WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1 = 23, 24, 25
WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2 = 30, 31, 32
MARIADB_ANNOTATE_ROWS, MARIADB_GTID, MARIADB_GTID_LIST = 160, 162, 163
MARIADB_WRITE_ROWS_COMPRESSED_V1, MARIADB_DELETE_ROWS_COMPRESSED_V1 = 169, 171
MYSQL_GTID = 33
ROWS_EVENTS = {
    WRITE_ROWS_V1: ("c", 1),
    UPDATE_ROWS_V1: ("u", 1),
    DELETE_ROWS_V1: ("d", 1),
    WRITE_ROWS_V2: ("c", 2),
    UPDATE_ROWS_V2: ("u", 2),
    DELETE_ROWS_V2: ("d", 2),
}
"""Rows event type -> (operation letter, version)."""

RawEvent = tuple[int, int, int, int, bytes]
"""``(event type, timestamp seconds, server id, end position in the file, body after the 19-byte header)``."""


class BinlogConnection:
    """One binlog dump from ``(file, position)``; :meth:`events` yields them as they come, heartbeats included.

    Raises :class:`PositionLost` when the server no longer has the file or the GTID (error 1236), :class:`SyncError`
    (transient) when the connection drops."""

    def __init__(self, connect: dict[str, Any], server_id: int, heartbeat_s: float) -> None:
        self.connect = dict(connect)
        self.server_id = server_id
        self.heartbeat_s = heartbeat_s
        self.conn: Any = None
        self.checksum = False

    def open(self, file: str, position: int, gtid_state: str | None = None) -> None:
        """Connect and send ``COM_BINLOG_DUMP`` from ``file`` at byte ``position``, or, with ``gtid_state``
        (MariaDB GTID list ``domain-server-seq[,...]``; ``""``: from the oldest binlog), from after that GTID state
        (``file`` and ``position`` are then not used)."""
        arguments = dict(self.connect)
        arguments["read_timeout"] = max(30.0, self.heartbeat_s * 4)
        self.conn = pymysql.connect(**arguments)
        with self.conn.cursor() as cur:
            cur.execute("SELECT @@global.binlog_checksum")
            row = cur.fetchone()
            self.checksum = bool(row and row[0] and str(row[0]).upper() != "NONE")
            cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            cur.execute("SET @mariadb_slave_capability = 4")
            cur.execute("SET @master_heartbeat_period = %s", (int(self.heartbeat_s * 1_000_000_000),))
            if gtid_state is not None:
                cur.execute("SET @slave_connect_state = %s", (gtid_state,))
                cur.execute("SET @slave_gtid_strict_mode = 1")
                cur.execute("SET @slave_gtid_ignore_duplicates = 0")
                file, position = "", 4
        payload = struct.pack("<IHI", position, 0, self.server_id) + file.encode()
        self.conn._execute_command(COM_BINLOG_DUMP, payload)

    def events(self) -> Iterator[RawEvent]:
        """Events from the dump, forever (the server keeps the connection open and sends heartbeats)."""
        read_packet = self.conn._read_packet
        unpack_header = HEADER.unpack_from
        crc32 = zlib.crc32
        checksum = self.checksum
        while True:
            try:
                packet = read_packet()
            except pymysql.err.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                if code == 1236:
                    raise PositionLost(
                        f"the binlog position to resume from is no longer on the server ({exc.args[1]}); "
                        "run `sluice sync PATH --resnapshot` to take a new snapshot"
                    ) from exc
                if code == SAME_SERVER_ID:
                    raise SyncError(
                        f"another replica registered with server_id {self.server_id} on this server and took over the "
                        "binlog dump (another copy of this sync, or another sync with the same name, side and database "
                        "on a machine with the same host name): give each capture its own `capture: {server_id: N}`"
                    ) from exc
                raise SyncError(f"binlog connection lost: {exc}", transient=True) from exc
            except (pymysql.err.InterfaceError, OSError) as exc:
                raise SyncError(f"binlog connection lost: {exc}", transient=True) from exc
            data: bytes = packet._data
            if data[0] == 0xFE and len(data) < 9:
                return  # EOF: the server ended the dump
            timestamp, kind, server_id, _size, end, _flags = unpack_header(data, 1)
            if checksum:
                if crc32(memoryview(data)[1:-4]) != int.from_bytes(data[-4:], "little"):
                    raise SyncError(f"binlog event at end position {end} fails its CRC32 check", transient=True)
                body = data[HEADER_SIZE + 1 : -4]
            else:
                body = data[HEADER_SIZE + 1 :]
            yield kind, timestamp, server_id, end, body

    def close(self) -> None:
        """Drop the connection (the server ends the dump thread)."""
        if self.conn is not None:
            with contextlib.suppress(Exception):  # closing a dump connection mid-stream may fail; it is gone either way
                self.conn.close()
            self.conn = None


def rotate_target(body: bytes) -> tuple[str, int]:
    """``(next file, position)`` of a ROTATE event."""
    return body[8:].decode(), int.from_bytes(body[:8], "little")


def query_parts(body: bytes) -> tuple[str, str]:
    """``(default database, statement)`` of a QUERY event."""
    db_length = body[8]
    status_length = int.from_bytes(body[11:13], "little")
    p = 13 + status_length
    database = body[p : p + db_length].decode()
    return database, body[p + db_length + 1 :].decode("utf-8", "replace")


def mariadb_gtid(body: bytes, server_id: int) -> str:
    """``domain-server-sequence`` of a MariaDB GTID event."""
    sequence = int.from_bytes(body[0:8], "little")
    domain = int.from_bytes(body[8:12], "little")
    return f"{domain}-{server_id}-{sequence}"


def file_number(name: str) -> int:
    """``binlog.000042`` -> 42."""
    return int(name.rsplit(".", 1)[-1])


def file_name(base: str, number: int, width: int = 6) -> str:
    """``(binlog, 42)`` -> ``binlog.000042``."""
    return f"{base}.{number:0{width}d}"
