"""The MySQL/MariaDB change stream: binlog events -> :class:`~sluice.cdc.base.ChangeBatch`es.

Positions (:data:`sluice.cdc.events.Position`): a row change is ``[file number, end offset of its rows
event, row index from 1]``; a point between transactions (a commit, a DDL, a heartbeat) is ``[file number,
offset, 0]`` and resuming from it starts the dump at that offset. Resuming from a row inside a
transaction starts the dump at the transaction's first event (remembered for the positions this process
yielded; otherwise the file's start) and leaves out what is at or before the position.

Per transaction: its first row change decides whether it is an echo (a change of ``marker_table``: the
sync's own write, skipped whole and counted). QUERY events inside ``BEGIN ... COMMIT`` (``SAVEPOINT``, which
apply writes after its marker row, ``ROLLBACK TO``) belong to the transaction: they neither end it nor give
a position, so every position reported while an echo transaction is read is the commit point before it and
a resumed stream reads that transaction again from its first event. DDL re-reads the table from ``information_schema`` and is
published as a :class:`~sluice.cdc.events.SchemaChange` (``TRUNCATE``: a ``t`` change); a ``CREATE TABLE``
in a captured database adds the table. Batches are yielded every :data:`BATCH_EVENTS` events, or
:data:`LINGER_S` seconds after their first change, or ``max_wait_s`` seconds when empty, inside transactions
too, so a huge transaction streams in pieces; the server's heartbeat (every :data:`HEARTBEAT_S` while idle)
wakes the reader so a last change is not held and an idle stream yields empty batches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from sluice.cdc.base import ChangeBatch, SyncError
from sluice.cdc.events import ChangeEvent, Column, Event, Position, SchemaChange, TableSchema
from sluice.cdc.mysql_binlog import (
    FORMAT_DESCRIPTION,
    HEADER_SIZE,
    HEARTBEAT,
    MARIADB_GTID,
    QUERY,
    ROTATE,
    ROWS_EVENTS,
    TABLE_MAP,
    XID,
    BinlogConnection,
    file_number,
    mariadb_gtid,
    query_parts,
    rotate_target,
)
from sluice.cdc.mysql_ddl import Ddl, classify, parse_ddl
from sluice.cdc.mysql_gtid import connect_state, gtid_text
from sluice.cdc.mysql_rows import (
    DecodeError,
    RowsDecoder,
    TableMap,
    binary_text,
    compile_rows,
    map_columns,
    packed_int,
    parse_table_map,
)
from sluice.cdc.mysql_types import InvalidDates

if TYPE_CHECKING:
    from sluice.cdc.mysql_capture import MysqlCapture

BATCH_EVENTS = 10_000
LINGER_S = 0.02
"""Seconds a batch with changes waits for more before it is yielded (latency against per-batch costs)."""
HEARTBEAT_S = 0.05
"""The server's heartbeat period while idle: the longest a change read just before an idle spell waits."""
"""Most events in one batch (a transaction of a million rows streams as a hundred batches)."""
STMT_END = 1
GTID_STANDALONE = 1
"""MariaDB GTID event flag: the group is one statement (DDL) without BEGIN/COMMIT."""
IN_TRANSACTION = ("SAVEPOINT", "ROLLBACK TO", "RELEASE ")
"""QUERY events that belong to the transaction around them (logged by ``SAVEPOINT``, ``ROLLBACK TO SAVEPOINT``)."""


class _Table:
    """A table the stream knows from a TABLE_MAP event: its map, decoders and schema (``None``: not captured)."""

    __slots__ = ("decoders", "key", "marker", "schema", "tmap")

    def __init__(self, tmap: TableMap, schema: TableSchema | None, marker: bool) -> None:
        self.tmap = tmap
        self.schema = schema
        self.marker = marker
        self.decoders: dict[bool, RowsDecoder] = {}
        self.key: list[str] = list(schema.key) if schema else []


class _GtidCursor:
    """Where a GTID-mode stream is (:mod:`sluice.cdc.mysql_gtid`): the last GTID done (``seq``, ``server``), the
    transaction being read and the rows events read in it."""

    __slots__ = ("domain", "event", "seq", "server", "txn_seq", "txn_server")

    def __init__(self, start: Position) -> None:
        self.seq, self.domain, self.server = start[0], start[3], start[4]
        self.txn_seq, self.txn_server, self.event = self.seq, self.server, 0

    def tail(self) -> list[int]:
        """The end of every position until the next commit: ``[domain, server of the last GTID done]``."""
        return [self.domain, self.server]

    def begin(self, body: bytes, server_id: int, gtid: str) -> None:
        """A GTID event: the transaction ``gtid`` starts. Raises :class:`SyncError` when it is in another
        replication domain or its sequence number is not above the last one (positions could not be ordered)."""
        seq = int.from_bytes(body[0:8], "little")
        domain = int.from_bytes(body[8:12], "little")
        if domain != self.domain:
            if self.seq or self.server:
                raise SyncError(
                    f"transaction {gtid} is in GTID domain {domain}, but position_mode: gtid follows domain {self.domain} "
                    "only: set position_mode: file and run `sluice sync PATH --resnapshot`"
                )
            self.domain = domain  # the empty state: the first domain seen is the one
        if seq <= self.seq:
            raise SyncError(
                f"transaction {gtid} comes after {self.domain}-{self.server}-{self.seq} in the binlog with a lower sequence "
                "number, so GTID positions cannot be ordered: set gtid_strict_mode=ON on the server, or use position_mode: file"
            )
        self.txn_seq, self.txn_server, self.event = seq, server_id, 0

    def rows_event(self) -> tuple[int, int]:
        """A rows event of the transaction: ``(seq of the last GTID done, its number in the transaction)``."""
        self.event += 1
        return self.seq, self.event

    def commit(self) -> Position:
        """The transaction is done: the position after it."""
        self.seq, self.server = self.txn_seq, self.txn_server
        return [self.seq, 0, 0, self.domain, self.server]


class BinlogStream:
    """One run of :meth:`MysqlCapture.stream`: the dump connection and the state between its events."""

    def __init__(self, capture: MysqlCapture, tables: Sequence[TableSchema], max_wait_s: float) -> None:
        self.capture = capture
        self.tables: dict[str, TableSchema] = {table.qualified: table for table in tables}
        self.namespaces = {table.namespace for table in tables}
        self.max_wait_s = max_wait_s
        self.marker = capture.marker_table
        self.collations = {
            int(i): name.decode() if isinstance(name, bytes) else str(name)
            for i, name in capture.query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL")
        }
        self.maps: dict[bytes, _Table] = {}  # TABLE_MAP body -> table (the same map recurs in each transaction)
        self.by_id: dict[int, _Table] = {}
        self.invalid = InvalidDates()
        self.invalid_by_table: dict[str, int] = {}
        """Of ``invalid.count``, per table (the batch's ``invalid_dates_by_table``)."""
        self.txn_starts: dict[tuple[int, int], tuple[int, int]] = {}
        self.pending: dict[str, dict[str, str]] = {}
        """Per table, renames of DDL read whose new name no schema read has yet (``a -> b`` then ``b -> c`` made
        before the catalog was read: ``b`` is in none): new name -> the name it had when last published, so the
        change that publishes it (a later DDL's rename, a TABLE_MAP naming it) renames from that name."""
        self.maxlen: dict[str, int] | None = None
        """Character set -> bytes of its largest character (read when a TABLE_MAP's schema is first needed)."""

    def run(self, start: Position) -> Iterator[ChangeBatch]:
        """Batches after ``start``, forever (until the consumer stops iterating)."""
        conn = BinlogConnection(self.capture.connect, self.capture.server_id, min(self.max_wait_s, HEARTBEAT_S))
        if self.capture.gtid:
            conn.open("", 4, connect_state(start))
            begin = list(start)
        else:
            file_no, offset, row = start[0], start[1], start[2] if len(start) > 2 else 0
            dump_from = offset
            if row:
                dump_from = self.txn_starts.get((file_no, offset), (file_no, 4))[1]
            conn.open(self.capture.file_name(file_no), dump_from)
            begin = list(start[:3]) if len(start) >= 3 else [file_no, offset, 0]
        try:
            yield from self._loop(conn, begin)
        finally:
            conn.close()

    def _loop(self, conn: BinlogConnection, start: list[int]) -> Iterator[ChangeBatch]:
        capture = self.capture
        cursor = _GtidCursor(start) if capture.gtid else None
        if cursor is not None:
            file, file_no = "", 0  # the dump's first event, a ROTATE, names the file
            boundary = list(start)
        else:
            file, file_no = capture.file_name(start[0]), start[0]
            boundary = [file_no, start[1], 0] if not start[2] else list(start)
        tail = cursor.tail() if cursor is not None else []  # GTID positions end with [domain, server]
        events: list[Event] = []
        last: list[int] = boundary
        at = 0  # end offset of the last event that has one (the text of GTID positions)
        skipped = 0
        commit_us = 0
        in_txn = False
        group = False  # inside BEGIN ... COMMIT: a QUERY event there (SAVEPOINT) neither ends it nor is DDL
        first_row = True
        echo = False
        gtid = ""
        txn_start = (file_no, start[1])
        deadline = time.monotonic() + self.max_wait_s
        lingering = False
        source = capture.source
        for kind, timestamp, server_id, end, body in conn.events():
            if end:
                at = end
            if kind in ROWS_EVENTS:
                a, b = cursor.rows_event() if cursor is not None else (file_no, end)  # the rows' position prefix
                table = self.by_id.get(int.from_bytes(body[:6], "little"))
                if first_row:
                    first_row = False
                    echo = table is not None and table.marker
                if table is not None and table.schema is not None and [a, b] >= start[:2]:
                    op, version = ROWS_EVENTS[kind]
                    rows = self._rows(table, op, version, body)
                    if echo:
                        skipped += len(rows)
                    else:
                        commit_us = timestamp * 1_000_000
                        text = f"{gtid} ({file}:{end})" if cursor is not None else f"{file}:{end}"
                        qualified = table.schema.qualified
                        schema_version = table.schema.version
                        key = table.key
                        for index, image in enumerate(rows, 1):
                            position = [a, b, index, *tail]
                            if position <= start:
                                continue
                            src = source(position, text, commit_us, gtid)
                            if op == "c":
                                events.append(
                                    ChangeEvent("c", qualified, [image[k] for k in key], src, None, image, schema_version)
                                )
                            elif op == "d":
                                events.append(
                                    ChangeEvent("d", qualified, [image[k] for k in key], src, image, None, schema_version)
                                )
                            else:
                                before, after = image
                                events.append(
                                    ChangeEvent("u", qualified, [after[k] for k in key], src, before, after, schema_version)
                                )
                        last = [a, b, len(rows), *tail]
                        if cursor is None:
                            self.txn_starts[(file_no, end)] = txn_start
            elif kind == TABLE_MAP:
                changed = self._table_map(body)
                if changed is not None:  # its rows were written under a schema the stream did not hold
                    position = [cursor.seq, cursor.event + 1, 0, *tail] if cursor is not None else [file_no, end, 0]
                    if position > start:
                        text = f"{gtid} ({file}:{end})" if cursor is not None else f"{file}:{end}"
                        schema, change, renamed = changed
                        src = source(position, text, timestamp * 1_000_000, gtid)
                        events.append(SchemaChange(schema.qualified, schema, change, src, renamed=renamed))
            elif kind == XID:
                in_txn, group, first_row, echo = False, False, True, False
                boundary = last = cursor.commit() if cursor is not None else [file_no, end, 0]
                tail = cursor.tail() if cursor is not None else tail
                commit_us = timestamp * 1_000_000
            elif kind == MARIADB_GTID:
                in_txn, first_row, echo = True, True, False
                group = not body[12] & GTID_STANDALONE  # BEGIN ... COMMIT, not one DDL statement
                gtid = mariadb_gtid(body, server_id)
                if cursor is not None:
                    cursor.begin(body, server_id, gtid)
                txn_start = (file_no, end - len(body) - HEADER_SIZE - (4 if conn.checksum else 0))  # the GTID event's start
            elif kind == QUERY:
                database, statement = query_parts(body)
                word = statement[:12].upper()
                if word.startswith("BEGIN"):
                    if not in_txn:
                        first_row, echo = True, False
                        txn_start = (file_no, end - len(body) - HEADER_SIZE - (4 if conn.checksum else 0))
                    in_txn, group = True, True
                elif word.startswith(("COMMIT", "XA ")) or word.rstrip(" ;") == "ROLLBACK":
                    in_txn, group, first_row, echo = False, False, True, False
                    boundary = last = cursor.commit() if cursor is not None else [file_no, end, 0]
                    tail = cursor.tail() if cursor is not None else tail
                elif (in_txn and group) or word.startswith(IN_TRANSACTION):
                    pass  # SAVEPOINT (apply writes them), ROLLBACK TO...: inside the transaction, not a commit point
                else:
                    position = cursor.commit() if cursor is not None else [file_no, end, 0]
                    tail = cursor.tail() if cursor is not None else tail
                    if position > start:
                        text = f"{gtid} ({file}:{end})" if cursor is not None else f"{file}:{end}"
                        events += self._ddl(statement, database, position, text, timestamp, gtid)
                    in_txn, group, first_row, echo = False, False, True, False
                    boundary = last = position
            elif kind == ROTATE:
                file, offset = rotate_target(body)
                capture.remember_base(file)
                file_no = file_number(file)
                if not in_txn and cursor is None:
                    boundary = last = [file_no, offset, 0]
            elif kind not in (HEARTBEAT, FORMAT_DESCRIPTION) and not in_txn and end and cursor is None:
                boundary = last = [file_no, end, 0]
            now = time.monotonic()
            if events and not lingering:  # the first change of this batch: yield it soon
                lingering = True
                deadline = min(deadline, now + LINGER_S)
            if len(events) >= BATCH_EVENTS or now >= deadline:
                position = max(last, boundary, start)
                text = gtid_text(position, file and f"{file}:{at}") if cursor is not None else f"{file}:{position[1]}"
                batch = ChangeBatch(events, position, text, commit_us, skipped, self.invalid.count, self.invalid_by_table)
                self.invalid.count, self.invalid_by_table = 0, {}
                events, skipped = [], 0
                if cursor is None:
                    self._forget(position)
                yield batch
                deadline, lingering = time.monotonic() + self.max_wait_s, False
        raise SyncError("the server ended the binlog dump", transient=True)

    def _forget(self, position: Position) -> None:
        """Keep the transaction starts of the last positions only (resume inside the current transaction)."""
        if len(self.txn_starts) > 10_000:
            keep = self.txn_starts.get((position[0], position[1]))
            self.txn_starts.clear()
            if keep is not None:
                self.txn_starts[(position[0], position[1])] = keep

    def _rows(self, table: _Table, op: str, version: int, body: bytes) -> list[Any]:
        update = op == "u"
        decoder = table.decoders.get(update)
        if decoder is None:
            try:
                decoder = table.decoders[update] = compile_rows(
                    table.tmap, self.collations, self.invalid, update, _binary_as(table)
                )
            except (DecodeError, ValueError) as exc:
                raise SyncError(str(exc), table=table.tmap.qualified) from exc
        p = 8
        if version == 2:
            p += int.from_bytes(body[8:10], "little")
        count, p = packed_int(body, p)
        width = (count + 7) // 8
        full = (1 << count) - 1
        if int.from_bytes(body[p : p + width], "little") != full or (
            update and int.from_bytes(body[p + width : p + 2 * width], "little") != full
        ):
            raise SyncError(
                f"{table.tmap.qualified}: the binlog has partial row images: set binlog_row_image=FULL on the server",
                table=table.tmap.qualified,
            )
        p += 2 * width if update else width
        invalid = self.invalid.count
        rows: list[Any] = decoder(body, p, len(body))
        if op == "d":  # a delete writes no value: its zero dates are not "written as NULL"
            self.invalid.count = invalid
        if self.invalid.count != invalid:
            name = table.tmap.qualified
            self.invalid_by_table[name] = self.invalid_by_table.get(name, 0) + self.invalid.count - invalid
        return rows

    def _table_map(self, body: bytes) -> tuple[TableSchema, str, dict[str, str]] | None:
        """Map the table of a TABLE_MAP event; ``(schema, change, renames)`` when the event's column names differ
        from the schema the stream holds for the table, which then becomes the one the event gives (see
        :meth:`_schema_at`), published before its rows."""
        key = body[:6] + body[8:]
        table = self.maps.get(key)
        changed = None
        if table is None:
            tmap = parse_table_map(body)
            qualified = tmap.qualified
            schema = self.tables.get(qualified)
            pending = self.pending.pop(qualified, {})
            names = [column.name for column in schema.columns] if schema is not None else []
            if schema is not None and tmap.names and qualified != self.marker and (tmap.names != names or pending):
                renamed = {pending[name]: name for name in tmap.names if name in pending and pending[name] != name}
                try:
                    new = _versioned(self._schema_at(tmap, schema), schema.version + 1)
                except DecodeError as exc:
                    raise SyncError(str(exc), table=qualified) from exc
                change, renamed = classify(schema, new, renamed)
                schema = self.tables[qualified] = new
                changed = schema, change, renamed
            table = _Table(tmap, schema, qualified == self.marker)
            if len(self.maps) > 10_000:
                self.maps.clear()
            self.maps[key] = table
        self.by_id[table.tmap.table_id] = table
        return changed

    def _schema_at(self, tmap: TableMap, held: TableSchema) -> TableSchema:
        """The table's schema where ``tmap`` stands in the binlog: its columns named as the map names them.

        A column the held schema (the catalog read at start, or at the last DDL) has by name is taken from it
        whole (type, default, and what the map cannot tell: MariaDB's JSON, UUID, INET). Another one, a column
        renamed or dropped since, is the map's (:func:`~sluice.cdc.mysql_rows.map_columns`: exact names, types,
        lengths, labels and nullability, no default), unless the map cannot give its type and the held column
        at its place, gone from the map, is one such (its rename, likely): that one, named as the map names it."""
        if self.maxlen is None:
            rows = self.capture.query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS")
            self.maxlen = {_text(name): int(size) for name, size in rows}
        mapped = map_columns(tmap, self.collations, self.maxlen)
        names = set(tmap.names)
        held_by_name = {column.name: column for column in held.columns}
        columns: list[Column] = []
        for i, column in enumerate(mapped):
            known = held_by_name.get(column.name)
            if known is None and i < len(held.columns) and held.columns[i].name not in names:
                partner = held.columns[i]
                if column.type in ("string", "bytes") and _unmapped(partner):
                    known = msgspec.structs.replace(partner, name=column.name)
            columns.append(known or column)
        key = [tmap.names[i] for i in tmap.primary_key if i < len(tmap.names)]
        if not tmap.primary_key and all(name in names for name in held.key):
            key = list(held.key)
        return TableSchema(held.namespace, held.name, columns, key, held.version)

    def _ddl(self, statement: str, database: str, position: Position, text: str, timestamp: int, gtid: str) -> list[Event]:
        ddl = parse_ddl(statement, database)
        if ddl is None:
            return []
        out: list[Event] = []
        source = self.capture.source(position, text, timestamp * 1_000_000, gtid)
        for namespace, name in ddl.tables:
            qualified = f"{namespace}.{name}"
            if qualified == self.marker or (qualified not in self.tables and namespace not in self.namespaces):
                continue
            out += self._table_change(ddl, namespace, name, statement, source)
        self._refresh_maps()
        return out

    def _table_change(self, ddl: Ddl, namespace: str, name: str, statement: str, source: Any) -> list[Event]:
        qualified = f"{namespace}.{name}"
        old = self.tables.get(qualified)
        if ddl.kind == "truncate":
            if old is None:
                return []
            return [ChangeEvent("t", qualified, [], source, schema_version=old.version)]
        if ddl.kind != "alter":
            pending = self.pending.pop(qualified, None)
            if ddl.kind == "rename" and pending:
                self.pending[".".join(next(new for old_name, new in ddl.renames if old_name == (namespace, name)))] = pending
        if ddl.kind == "drop":
            if old is None:
                return []
            del self.tables[qualified]
            return [SchemaChange(qualified, old, "drop_table", source, statement)]
        if ddl.kind == "rename":
            new_name = next(new for old_name, new in ddl.renames if old_name == (namespace, name))
            schema = self.capture.table(*new_name)
            if old is None or schema is None:
                return []
            del self.tables[qualified]
            schema = _versioned(schema, old.version + 1)
            self.tables[schema.qualified] = schema
            return [SchemaChange(qualified, schema, "rename_table", source, statement)]
        schema = self.capture.table(namespace, name)
        if schema is None:
            return []
        renames = self._renames(qualified, ddl, schema)
        if renames is None:
            return []  # published with the rename that names its column (a later DDL's, a TABLE_MAP's)
        change, renamed = classify(old, schema, renames)
        schema = _versioned(schema, old.version + 1 if old else 1)
        self.tables[qualified] = schema
        return [SchemaChange(qualified, schema, change, source, statement, renamed)]

    def _renames(self, qualified: str, ddl: Ddl, schema: TableSchema) -> dict[str, str] | None:
        """The column renames of ``ddl`` from the names last published (``a -> b`` then ``b -> c``: ``a -> c``);
        ``None`` while one is not in ``schema`` (the catalog now), renamed again (or dropped) by a later DDL the
        stream has not read yet: the change waits, since publishing ``schema`` would drop ``a`` from the target.

        Pending renames (:attr:`pending`) resolve with the DDL that renames or drops their column again, or the
        next TABLE_MAP of the table (:meth:`_table_map`), which names the columns as they were then."""
        pending = self.pending.pop(qualified, {})
        origins = {old: pending.pop(old, old) for old in ddl.columns}
        for column in ddl.dropped:
            pending.pop(column, None)
        names = {column.name for column in schema.columns}
        renames: dict[str, str] = {}
        for old, new in ddl.columns.items():
            if new in names:
                renames[origins[old]] = new
            else:
                pending[new] = origins[old]
        if pending:
            self.pending[qualified] = pending
            return None
        return renames

    def _refresh_maps(self) -> None:
        """After DDL, tables seen before are mapped again from their next TABLE_MAP event."""
        self.maps.clear()
        self.by_id.clear()


def _versioned(schema: TableSchema, version: int) -> TableSchema:
    return TableSchema(schema.namespace, schema.name, schema.columns, schema.key, version)


def _unmapped(column: Column) -> bool:
    """A MariaDB type the binlog carries as another (JSON as LONGTEXT, UUID and INET as BINARY): its TABLE_MAP
    column cannot say it."""
    return column.type == "json" or binary_text(column) is not None


def _binary_as(table: _Table) -> dict[int, str]:
    """Column index -> ``uuid`` / ``inet4`` / ``inet6`` for the columns of ``table``'s map that its schema says are
    one of those (the binlog carries them as BINARY: :func:`~sluice.cdc.mysql_rows.compile_rows`)."""
    if table.schema is None:
        return {}
    by_name = {column.name: column for column in table.schema.columns}
    out: dict[int, str] = {}
    for i, name in enumerate(table.tmap.names):
        column = by_name.get(name)
        kind = binary_text(column) if column is not None else None
        if kind is not None:
            out[i] = kind
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)
