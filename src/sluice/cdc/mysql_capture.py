"""Capture from MySQL/MariaDB: server checks, table schemas, key-ordered snapshot chunks, and the binlog stream.

:class:`MysqlCapture` is the ``capture`` plugin ``mysql`` (:mod:`sluice.cdc.plugins`). Types follow
:mod:`sluice.cdc.mysql_types`; the stream (:mod:`sluice.cdc.mysql_stream`) decodes row events with the
generated decoders of :mod:`sluice.cdc.mysql_rows`. Every connection runs with ``time_zone = '+00:00'``,
so a TIMESTAMP reads as the same instant in snapshot and stream whatever the server's or the client's zone.
Server requirements and the type map: ``docs/cdc/mysql.md``.
"""

from __future__ import annotations

import re
import socket
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql
import pymysql.cursors

from sluice.cdc.base import Capture, ChangeBatch, PositionLost, SnapshotChunk, SourceNotReady, SyncError
from sluice.cdc.events import Position, Source, TableSchema
from sluice.cdc.mysql_binlog import file_number
from sluice.cdc.mysql_gtid import (
    binlog_snapshot_point,
    gtid_position,
    gtid_problems,
    gtid_text,
    snapshot_gtid,
    snapshot_point,
    wrong_shape,
)
from sluice.cdc.mysql_types import (
    InvalidDates,
    column_from_info,
    key_columns,
    key_parameter,
    quote,
    snapshot_column,
)
from sluice.cdc.plugins import MysqlCaptureOptions
from sluice.connectors.mysql import ENCODERS, connect_arguments, error_message

SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
FETCH_ROWS = 5000
COLUMNS_QUERY = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE,"
    " DATETIME_PRECISION, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE, COLUMN_KEY, COLUMN_DEFAULT"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA {where} ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
)


def server_problems(settings: dict[str, str], grants: list[str]) -> list[str]:
    """What to change on the server before capture can start, from its global variables and the user's grants.

    ``settings``: lower-case variable name -> value (``log_bin``, ``binlog_format``, ``binlog_row_image``,
    ``binlog_row_metadata``, ``version``); ``grants``: the lines of ``SHOW GRANTS``.

    >>> server_problems({"log_bin": "ON", "binlog_format": "MIXED", "binlog_row_image": "FULL",
    ...                  "binlog_row_metadata": "FULL"}, ["GRANT ALL PRIVILEGES ON *.* TO x"])[0].split(":")[0]
    'binlog_format is MIXED'
    """
    problems = []
    if settings.get("log_bin", "OFF").upper() not in ("ON", "1"):
        problems.append("log_bin is OFF: start the server with log_bin (e.g. log_bin=mysql-bin and server_id=1 in [mysqld])")
    for name, wanted in (("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("binlog_row_metadata", "FULL")):
        value = settings.get(name)
        if value is None:
            if name == "binlog_row_metadata":
                problems.append(
                    f"the server ({settings.get('version', '?')}) has no binlog_row_metadata: "
                    "capture needs MariaDB 10.5+ or MySQL 8.0+"
                )
            continue
        if value.upper() != wanted:
            problems.append(
                f"{name} is {value}: set {name}={wanted} in the server configuration ([mysqld]) and restart, "
                f"or SET GLOBAL {name}={wanted}"
            )
    text = " ".join(grants).upper()
    # The grantee as SHOW GRANTS names it (`user`@`host`), for a GRANT the administrator can paste.
    user = next((found[1] for line in grants if (found := re.search(r"\bTO\s+(\S+)", line))), "<user>")
    if "ALL PRIVILEGES ON *.*" not in text:
        if "REPLICATION SLAVE" not in text:
            problems.append(f"the user lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE ON *.* TO {user}")
        if "REPLICATION CLIENT" not in text and "BINLOG MONITOR" not in text:
            problems.append(
                f"the user lacks REPLICATION CLIENT (MariaDB 10.5+: BINLOG MONITOR): GRANT REPLICATION CLIENT ON *.* TO {user}"
            )
    return problems


def default_server_id(sync: str, side: str, database: str | None, host: str | None = None) -> int:
    """The replica id a capture registers with when ``capture: {server_id}`` is not set: 1,000,000 plus the
    CRC-32 of this machine's host name, the URL's database, the sync and the side, modulo 10^9. The host name
    and database keep two copies of a sync (a laptop and a staging machine, two projects with the same names)
    from sharing an id: the server allows one dump per id and drops the older one (error 4052)."""
    key = f"{host if host is not None else socket.gethostname()}/{database or ''}/{sync}/{side}"
    return 1_000_000 + zlib.crc32(key.encode()) % 1_000_000_000


class MysqlCapture(Capture):
    """Capture of one MySQL/MariaDB server (``mysql://user:password@host:port/database``).

    With a database in the URL, :meth:`list_tables` lists that database's tables; without one, every user
    database's. ``marker_table`` (``namespace.name``): apply's positions table on this server, whose
    transactions are skipped (both-ways syncs)."""

    def __init__(self, url: str, options: MysqlCaptureOptions, sync: str, side: str, marker_table: str | None = None) -> None:
        self.url = url
        self.options = options
        self.sync = sync
        self.side = side
        self.marker_table = marker_table
        self.connect = connect_arguments(url)
        self.database: str | None = self.connect.get("database")
        self.server_id = options.server_id or default_server_id(sync, side, self.database)
        self.origin = f"{sync}/{side}"
        self.gtid = options.position_mode == "gtid"
        """Positions are GTID positions (:mod:`sluice.cdc.mysql_gtid`), else ``[file number, offset, row]``."""
        self._ctl: Any = None
        self._base: tuple[str, int] | None = None  # binlog base name and digits of its number
        self._read: tuple[Position, str] | None = None  # the last GTID position current_position() read

    # --- connections -------------------------------------------------------------------------------------

    def connection(self) -> Any:
        """The control connection (autocommit, utf8mb4, session time zone UTC), opened on first use."""
        if self._ctl is None:
            self._ctl = self.open()
        return self._ctl

    def open(self, **extra: Any) -> Any:
        """A new PyMySQL connection with the session in UTC; values come back as text (no Python conversion)."""
        arguments = dict(self.connect)
        arguments.update(conv=ENCODERS, autocommit=True, init_command="SET time_zone = '+00:00'", **extra)
        try:
            return pymysql.connect(**arguments)
        except pymysql.MySQLError as exc:
            raise SyncError(
                f"cannot connect to {self.side}: {error_message(exc)}; check the host, port, user and password of "
                f"connection '{self.side}'",
                transient=True,
            ) from exc

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.connection().cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def close(self) -> None:
        if self._ctl is not None:
            try:
                self._ctl.close()
            finally:
                self._ctl = None

    # --- checks and schemas ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Server settings and grants capture needs (:func:`server_problems`); empty when ready."""
        names = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "version", "gtid_binlog_pos")
        rows = self.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (names,))
        settings = {str(name).lower(): _text(value) for name, value in rows}
        grants = [_text(row[0]) for row in self.query("SHOW GRANTS")]
        problems = server_problems(settings, grants)
        if self.gtid:
            problems += gtid_problems(settings.get("version", ""), settings.get("gtid_binlog_pos"))
        return problems

    def list_tables(self) -> list[TableSchema]:
        """Base tables of the URL's database (or of every user database), columns typed, with their primary key."""
        if self.database:
            return self.read_tables([self.database])
        skip = set(SYSTEM_DATABASES)
        if self.marker_table:
            skip.add(self.marker_table.split(".", 1)[0])
        databases = [_text(row[0]) for row in self.query("SHOW DATABASES") if _text(row[0]) not in skip]
        return self.read_tables(databases)

    def read_tables(self, databases: Sequence[str], names: Sequence[str] | None = None) -> list[TableSchema]:
        """The schemas of the base tables of ``databases`` (only ``names`` when given), in name order."""
        if not databases:
            return []
        where = "IN %s"
        args: list[Any] = [tuple(databases)]
        base = self.query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
            " WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN %s",
            (tuple(databases),),
        )
        wanted = {(_text(db), _text(name)) for db, name in base}
        if names is not None:
            wanted = {item for item in wanted if item[1] in set(names)}
        if self.marker_table:
            namespace, _, name = self.marker_table.partition(".")
            wanted.discard((namespace, name))
        json_columns = {
            (_text(db), _text(table), _text(column))
            for db, table, column in self.query(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, SUBSTRING_INDEX(SUBSTRING_INDEX(CHECK_CLAUSE, '`', 2), '`', -1)"
                " FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN %s AND CHECK_CLAUSE LIKE 'json_valid(%%'",
                (tuple(databases),),
            )
        }
        keys = self._primary_keys(databases)
        fields = (
            "TABLE_SCHEMA", "TABLE_NAME", "COLUMN_NAME", "DATA_TYPE", "COLUMN_TYPE", "NUMERIC_PRECISION",
            "NUMERIC_SCALE", "DATETIME_PRECISION", "CHARACTER_MAXIMUM_LENGTH", "IS_NULLABLE", "COLUMN_KEY",
            "COLUMN_DEFAULT",
        )  # fmt: skip
        tables: dict[tuple[str, str], list[Any]] = {}
        for raw in self.query(COLUMNS_QUERY.format(where=where), args):
            row = {name: _value(name, value) for name, value in zip(fields, raw, strict=True)}
            ident = (row["TABLE_SCHEMA"], row["TABLE_NAME"])
            if ident not in wanted:
                continue
            jsons = frozenset(column for db, table, column in json_columns if (db, table) == ident)
            tables.setdefault(ident, []).append(column_from_info(row, jsons))
        return [
            TableSchema(namespace=db, name=name, columns=columns, key=keys.get((db, name), []))
            for (db, name), columns in sorted(tables.items())
        ]

    def _primary_keys(self, databases: Sequence[str]) -> dict[tuple[str, str], list[str]]:
        keys: dict[tuple[str, str], list[str]] = {}
        for db, table, column in self.query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE"
            " WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA IN %s ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
            (tuple(databases),),
        ):
            keys.setdefault((_text(db), _text(table)), []).append(_text(column))
        return keys

    def table(self, namespace: str, name: str) -> TableSchema | None:
        """One table's schema now, or ``None`` when it does not exist."""
        found = self.read_tables([namespace], [name])
        return found[0] if found else None

    # --- positions -----------------------------------------------------------------------------------------

    def current_position(self) -> tuple[Position, str]:
        """``([file number, offset, 0], "file:offset")``: the binlog point a consistent snapshot starting now holds
        (:func:`~sluice.cdc.mysql_gtid.binlog_snapshot_point`, no lock taken). Not the binlog's end: MariaDB writes
        a transaction to the binlog before the engine commits it, so a snapshot read right after the end was read
        may miss a transaction before that end, and a stream from it would skip it. A server without that point
        (MySQL) gives the binlog's end (``SHOW MASTER STATUS``, :meth:`binlog_end`), which has that window.

        GTID mode: ``([seq, 0, 0, domain, server], "domain-server-seq (file:offset)")``, the GTID state of the
        binlog point a consistent snapshot sees (:func:`~sluice.cdc.mysql_gtid.snapshot_gtid`, no lock either)."""
        if self.gtid:
            state, name, offset = snapshot_gtid(self.query)
            self.remember_base(name)
            domain = int(self.query("SELECT @@global.gtid_domain_id")[0][0])
            position = gtid_position(state, domain)
            self._read = position, gtid_text(position, f"{name}:{offset}")
            return self._read
        point = binlog_snapshot_point(self.query)
        return self.binlog_end() if point is None else self.file_position(*point)

    def binlog_end(self) -> tuple[Position, str]:
        """``([file number, offset, 0], "file:offset")`` of the binlog's end (``SHOW MASTER STATUS``; MySQL 8.4:
        ``SHOW BINARY LOG STATUS``). Raises :class:`SourceNotReady` when the binlog is off."""
        try:
            rows = self.query("SHOW MASTER STATUS")
        except pymysql.MySQLError:
            rows = self.query("SHOW BINARY LOG STATUS")  # MySQL 8.4
        if not rows:
            raise SourceNotReady(f"{self.side} has no binlog: start the server with log_bin")
        return self.file_position(_text(rows[0][0]), int(rows[0][1]))

    def file_position(self, name: str, offset: int) -> tuple[Position, str]:
        """``([file number, offset, 0], "file:offset")`` of binlog file ``name`` (whose base name is remembered)."""
        self.remember_base(name)
        return [file_number(name), offset, 0], f"{name}:{offset}"

    def remember_base(self, name: str) -> None:
        base, digits = name.rsplit(".", 1)
        self._base = (base, len(digits))

    def file_name(self, number: int) -> str:
        """The binlog file name of ``number`` (``binlog.000042``)."""
        if self._base is None:
            self.current_position()
        assert self._base is not None
        base, width = self._base
        return f"{base}.{number:0{width}d}"

    def source(self, position: Position, text: str, commit_ts_us: int = 0, txid: str = "", snapshot: bool = False) -> Source:
        return Source(
            connector="mysql",
            name=self.side,
            position=position,
            position_text=text,
            commit_ts_us=commit_ts_us,
            txid=txid,
            origin=self.origin,
            snapshot=snapshot,
        )

    # --- snapshot --------------------------------------------------------------------------------------------

    def snapshot(self, table: TableSchema, after_key: list[Any] | None, chunk_rows: int) -> Iterator[SnapshotChunk]:
        """Chunks of ``chunk_rows`` rows in key order after ``after_key``, each read in its own
        ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` through a streaming cursor. Rows carry the binlog
        position of their chunk's snapshot (MariaDB's ``binlog_snapshot_file``/``_position``). Rows come as value
        lists (:attr:`SnapshotChunk.rows`), converted column by column (:func:`snapshot_column`).

        GTID mode: rows carry the last position :meth:`current_position` read (one is read here when none was),
        which precedes every chunk: MariaDB gives a consistent snapshot's file and offset, not its GTID state,
        and turning one into the other reads the binlog file (the runtime stamps every row of a snapshot with
        the position read before it began anyway)."""
        if self.gtid and self._read is None:
            self.current_position()
        conn = self.open(cursorclass=pymysql.cursors.SSCursor)
        try:
            estimate = self._estimate(table)
            key = key_columns(table)
            last = after_key
            read = 0
            while True:
                chunk = self._chunk(conn, table, key, last, chunk_rows if key else None)
                read += chunk.count
                chunk.rows_read = read
                chunk.rows_total_estimate = estimate
                if chunk.last_key is None:
                    chunk.last_key = last
                last = chunk.last_key
                chunk.done = not key or chunk.count < chunk_rows
                yield chunk
                if chunk.done:
                    return
        finally:
            conn.close()

    def _estimate(self, table: TableSchema) -> int | None:
        rows = self.query(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (table.namespace, table.name),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def _chunk(self, conn: Any, table: TableSchema, key: list[Any], after: list[Any] | None, limit: int | None) -> SnapshotChunk:
        invalid = InvalidDates()
        columns = table.columns
        reads = [snapshot_column(column, invalid) for column in columns]
        names = [column.name for column in columns]
        key_index = [names.index(column.name) for column in key]
        selected = ", ".join(expression for expression, _ in reads)
        sql = f"SELECT {selected} FROM {quote(table.namespace)}.{quote(table.name)}"
        args: list[Any] = []
        if after is not None and key:
            clauses = []
            for n in range(len(key)):
                parts = [f"{quote(c.name)} = %s" for c in key[:n]] + [f"{quote(key[n].name)} > %s"]
                clauses.append("(" + " AND ".join(parts) + ")")
                args += [key_parameter(c, v) for c, v in zip(key[: n + 1], after[: n + 1], strict=True)]
            sql += " WHERE " + " OR ".join(clauses)
        if key:
            sql += " ORDER BY " + ", ".join(quote(c.name) for c in key)
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows: list[list[Any]] = []
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            point = snapshot_point(cur.fetchall())
            if self._read is not None:
                position, text = self._read
            elif point is not None:
                position, text = self.file_position(*point)
            else:
                position, text = self.binlog_end()
            source = self.source(position, text, snapshot=True)
            cur.execute(sql, args)
            while raw := cur.fetchmany(FETCH_ROWS):
                # Column by column: one conversion call per column of the batch, not per value.
                values = [
                    column if convert is None else convert(column)
                    for column, (_, convert) in zip(zip(*raw, strict=True), reads, strict=True)
                ]
                rows += map(list, zip(*values, strict=True))
            cur.execute("COMMIT")
        last_key = [rows[-1][i] for i in key_index] if rows and key else None
        return SnapshotChunk(
            table=table.qualified,
            events=[],
            last_key=last_key,
            rows_read=0,
            invalid_dates=invalid.count,
            columns=names,
            rows=rows,
            source=source,
        )

    # --- stream ----------------------------------------------------------------------------------------------

    def stream(self, start: Position, tables: Sequence[TableSchema], max_wait_s: float) -> Iterator[ChangeBatch]:
        """The binlog from after ``start``: see :class:`sluice.cdc.mysql_stream.BinlogStream`.

        Raises :class:`PositionLost` when ``start`` is gone from the server or was made by the other
        ``position_mode`` (the option changed: a new snapshot is needed)."""
        from sluice.cdc.mysql_stream import BinlogStream

        problem = wrong_shape(start, self.gtid)
        if problem:
            raise PositionLost(problem)

        yield from BinlogStream(self, tables, max_wait_s).run(start)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


NUMERIC_FIELDS = frozenset({"NUMERIC_PRECISION", "NUMERIC_SCALE", "DATETIME_PRECISION", "CHARACTER_MAXIMUM_LENGTH"})


def _value(name: str, value: Any) -> Any:
    if value is None:
        return None
    text = _text(value)
    return int(text) if name in NUMERIC_FIELDS else text
