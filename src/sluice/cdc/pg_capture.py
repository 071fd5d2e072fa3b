"""PostgreSQL capture: logical decoding with wal2json through a slot and publication Sluice creates.

psycopg 3 has no replication-protocol client, so capture uses the SQL interface of logical decoding on
ordinary connections (https://www.postgresql.org/docs/15/logicaldecoding-example.html):

* ``pg_create_logical_replication_slot(slot, 'wal2json')`` in :meth:`PostgresCapture.prepare` (or when
  :meth:`PostgresCapture.current_position` is first called), i.e. before a snapshot's first read, so the slot's
  stream covers every later change; ``prepare`` also sets ``REPLICA IDENTITY FULL`` (``replica_identity_full``)
  before the run's first position is read;
* ``pg_logical_slot_peek_changes`` (does not consume) read through a server-side cursor, so a transaction of
  a million rows is never held whole in Python, decoded with msgspec (:mod:`sluice.cdc.pg_stream`);
* ``pg_replication_slot_advance`` only in :meth:`PostgresCapture.acknowledge`, once the runtime has put the
  events on the bus: a crash between reading and publishing loses nothing, the next peek reads it again;
* ``pg_logical_emit_message(false, 'sluice-heartbeat', ...)`` while the tables are idle, so the slot's
  ``confirmed_flush_lsn`` keeps moving and the server can recycle WAL written by other databases or tables.

Server requirements, the type map and the limits (DDL detection, TOAST) are in ``docs/cdc/postgresql.md``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from sluice.cdc import pg_types
from sluice.cdc.base import Capture, ChangeBatch, PositionLost, SnapshotChunk, SourceNotReady, SyncError
from sluice.cdc.events import Column, Position, Source, TableSchema
from sluice.cdc.pg_catalog import read_tables
from sluice.cdc.pg_stream import StreamDecoder
from sluice.cdc.pg_wal2json import HEARTBEAT_PREFIX, add_tables_option, lsn_int, lsn_text, peek_sql
from sluice.cdc.pg_wal2json import decoder as w2j
from sluice.cdc.plugins import PostgresCaptureOptions

SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1"
"""Every capture session prints values the same way, whatever the server's or the role's defaults."""

SLUICE_NAMESPACE = "sluice_cdc"
RESNAPSHOT = "run `sluice sync PATH --resnapshot` to copy the tables again"

log = logging.getLogger("sluice.cdc.capture")


def default_slot(sync: str, side: str) -> str:
    """``sluice_<sync>_<side>``, lower-cased, other characters as ``_``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_]", "_", f"sluice_{sync}_{side}".lower())[:63]


class PostgresCapture(Capture):
    """Capture of one PostgreSQL database. See the module docstring; options: :class:`PostgresCaptureOptions`."""

    ddl_in_stream = False
    """Logical decoding carries no DDL: a rename made while the sync was stopped is in no row the slot still holds."""

    PEEK_ROWS = 100_000
    """``upto_nchanges`` of one peek (wal2json rows; a transaction is never cut, so one peek may return more)."""
    BATCH_EVENTS = 5_000
    """Events per :class:`ChangeBatch` at most (a big transaction spans several batches)."""
    FETCH_ROWS = 2_000
    """Rows fetched from the server-side cursor at a time."""
    IDLE_SLEEP_S = (0.005, 0.05)
    """Sleep between peeks that found nothing new: doubles from the first to the second value."""
    VISIBILITY_WAIT_S = 2.0
    """Seconds :meth:`current_position` waits at most for the transactions running when it read the position
    to end (a commit in flight ends within microseconds; a longer one commits after the position)."""
    VISIBILITY_POLL_S = 0.005
    """Seconds between two checks of that wait."""

    def __init__(self, url: str, options: PostgresCaptureOptions, sync: str, side: str, marker_table: str | None = None) -> None:
        self.url = url
        self.options = options
        self.sync = sync
        self.side = side
        self.marker_table = marker_table
        self.slot = options.slot or default_slot(sync, side)
        self.slot_created_at: str | None = None
        """The slot's position when this object created it (it did not exist), else None."""
        self.publication = options.publication or self.slot
        self._own_namespaces = {SLUICE_NAMESPACE} | ({marker_table.partition(".")[0]} if marker_table else set())
        self._conns: dict[str, psycopg.Connection[Any]] = {}
        self._decoder: StreamDecoder | None = None
        self._lock = threading.Lock()
        self._pending_ack: Position | None = None

    # connections ---------------------------------------------------------------------------------------

    def _connect(self, role: str, autocommit: bool = True) -> psycopg.Connection[Any]:
        conn = self._conns.get(role)
        if conn is not None and not conn.closed:
            return conn
        try:
            conn = psycopg.connect(self.url, autocommit=autocommit, options=SESSION_OPTIONS, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise SyncError(f"cannot connect to PostgreSQL for capture ({self.side}): {exc}".strip(), transient=True) from exc
        if role == "snapshot":
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self._conns[role] = conn
        return conn

    @property
    def _control(self) -> psycopg.Connection[Any]:
        return self._connect("control")

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # readiness ------------------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Problems with the server: ``wal_level``, free slots, the role's privilege, wal2json. Empty: ready."""
        conn = self._control
        problems: list[str] = []
        wal_level = conn.execute("SHOW wal_level").fetchone()
        if wal_level is None or wal_level[0] != "logical":
            problems.append(
                f"wal_level is {wal_level[0] if wal_level else '?'!r}: set wal_level = logical "
                "(ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
            )
        row = conn.execute(
            "SELECT rolsuper, rolreplication, current_user::text FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        privileged = bool(row and (row[0] or row[1]))
        if not privileged:
            user = row[2] if row else "the capture role"
            problems.append(f"role {user} has neither REPLICATION nor superuser: run ALTER ROLE {user} WITH REPLICATION")
        slot = self._slot_row()
        if slot is not None and slot[2] != "wal2json":
            problems.append(
                f"replication slot {self.slot} uses the {slot[2]} plugin, not wal2json: drop it "
                f"(SELECT pg_drop_replication_slot('{self.slot}')) or choose another capture slot"
            )
        free = True
        if slot is None:
            used, limit = conn.execute(
                "SELECT (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int"
            ).fetchone() or (0, 0)
            if used >= limit:
                free = False
                problems.append(
                    f"max_replication_slots = {limit} are all in use: raise max_replication_slots in postgresql.conf "
                    "and restart, or drop an unused slot (SELECT pg_drop_replication_slot('name'))"
                )
        if slot is None and free and privileged and not problems:
            problem = self._wal2json_missing()
            if problem:
                problems.append(problem)
        return problems

    def _wal2json_missing(self) -> str | None:
        """Try a temporary wal2json slot (dropped at once): the only way SQL can tell the plugin is there."""
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        try:
            conn.execute("SET statement_timeout = '10s'")
            name = f"sluice_check_{conn.info.backend_pid}"
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json', true)", [name])
            conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
        except psycopg.errors.QueryCanceled:
            return None  # long transactions keep the slot from being built; nothing known about wal2json
        except psycopg.Error as exc:
            if "wal2json" not in str(exc):
                raise
            major = conn.info.server_version // 10000
            return (
                f"the wal2json output plugin is not installed on the server ({str(exc).strip()}): install the "
                f"Debian package postgresql-{major}-wal2json (apt-get install postgresql-{major}-wal2json)"
            )
        finally:
            conn.close()
        return None

    # catalog --------------------------------------------------------------------------------------------

    def list_tables(self) -> list[TableSchema]:
        """User tables (no system schemas, no Sluice schema), columns mapped by :mod:`sluice.cdc.pg_types`."""
        return [t for t in read_tables(self._control) if t.namespace not in self._own_namespaces]

    def _read_table(self, namespace: str, name: str) -> TableSchema | None:
        if namespace in self._own_namespaces:
            return None
        found = read_tables(self._control, namespace, name)
        return found[0] if found else None

    # slot and publication ----------------------------------------------------------------------------------

    def _slot_row(self) -> tuple[Any, ...] | None:
        return self._control.execute(
            "SELECT restart_lsn::text, confirmed_flush_lsn::text, plugin::text, active "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [self.slot],
        ).fetchone()

    def ensure_slot(self) -> None:
        """Create the replication slot when it does not exist. Raises :class:`SourceNotReady` when the server refuses."""
        if self._slot_row() is not None:
            return
        try:
            created = self._control.execute(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", [self.slot]
            ).fetchone()
        except psycopg.errors.DuplicateObject:
            return
        except psycopg.Error as exc:
            problems = self.check()
            detail = "; ".join(problems) if problems else str(exc).strip()
            raise SourceNotReady(f"cannot create replication slot {self.slot}: {detail}") from exc
        if created:
            self.slot_created_at = str(created[0])

    def prepare(self, tables: Sequence[TableSchema]) -> None:
        """The slot, then the publication of ``tables`` and, with ``replica_identity_full``, REPLICA IDENTITY FULL
        on them: called before the run's first position is read, so an update made after that position carries
        its whole old row even when the stream has not opened yet (``--once``, a snapshot in progress)."""
        self.ensure_slot()
        self.ensure_publication(tables)

    def ensure_publication(self, tables: Sequence[TableSchema]) -> None:
        """Set REPLICA IDENTITY FULL where needed, then create the publication or add the missing tables to it.

        REPLICA IDENTITY FULL is set on every table when ``replica_identity_full`` is asked, and always on a
        table without a primary key: without it PostgreSQL logs no old row for its UPDATEs and DELETEs
        (wal2json emits nothing for them, so they would be lost) and refuses those statements outright once
        the table is in a publication, which would break the application's own writes."""
        conn = self._control
        names = {t.qualified: sql.SQL("{}.{}").format(sql.Identifier(t.namespace), sql.Identifier(t.name)) for t in tables}
        try:
            for table in tables:
                if self.options.replica_identity_full or not table.key:
                    identity = conn.execute(
                        "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = %s AND c.relname = %s",
                        [table.namespace, table.name],
                    ).fetchone()
                    if identity is None or identity[0] != "f":  # ALTER TABLE takes a lock: only when needed
                        conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(names[table.qualified]))
            published = list(tables)
            if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [self.publication]).fetchone() is None:
                statement = sql.SQL("CREATE PUBLICATION {}").format(sql.Identifier(self.publication))
                if published:
                    listed = sql.SQL(", ").join(names[t.qualified] for t in published)
                    statement = sql.SQL("{} FOR TABLE {}").format(statement, listed)
                conn.execute(statement)
            else:
                present = {
                    (s, t)
                    for s, t in conn.execute(
                        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = %s",
                        [self.publication],
                    )
                }
                for table in published:
                    if (table.namespace, table.name) not in present:
                        conn.execute(
                            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                                sql.Identifier(self.publication), names[table.qualified]
                            )
                        )
        except psycopg.errors.InsufficientPrivilege as exc:
            raise SourceNotReady(
                f"cannot create or alter publication {self.publication}: {str(exc).strip()}; "
                "the capture role must own the synced tables (or be superuser)"
            ) from exc

    def drop(self) -> None:
        """Drop the replication slot and the publication (both may be absent)."""
        if "stream" in self._conns:
            self._conns.pop("stream").close()
        conn = self._control
        if self._slot_row() is not None:
            conn.execute("SELECT pg_drop_replication_slot(%s)", [self.slot])
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(self.publication)))

    # positions ------------------------------------------------------------------------------------------

    def current_position(self) -> tuple[Position, str]:
        """Creates the slot if needed, then ``[pg_current_wal_lsn(), 0]``, returned once every transaction that
        was running when it was read has ended (at most :attr:`VISIBILITY_WAIT_S`): a transaction whose commit
        record is at or before the position is then seen by a snapshot started afterwards, a later one is in
        the slot's stream.

        The wait closes a window of the commit: a backend writes (and flushes) its commit record, then marks the
        transaction committed in the clog, and only then leaves the ProcArray, which is when new snapshots see it
        as committed (``RecordTransactionCommit`` then ``ProcArrayEndTransaction``, in that order in
        ``CommitTransaction``, ``src/backend/access/transam/xact.c``). A transaction between the two steps when
        the LSN is read has its commit record before the position, so the stream skips it, and is still running
        for a snapshot taken right after, which misses it: lost.

        So a second statement (``pg_current_snapshot()`` is the statement's snapshot, taken when the statement
        starts: it must come after the LSN read) takes the transactions running then: those the snapshot lists
        (``pg_snapshot_xip``, ids below its ``xmax``) and every id from its ``xmax`` up to the next id to be
        assigned (``age(xid)`` counts to it; the snapshot does not list those, and the newest transaction, the one
        the window most likely holds, is one of them). Then this polls every :attr:`VISIBILITY_POLL_S` until each
        is visible to a new snapshot (``pg_visible_in_snapshot`` semantics: committed or aborted, out of the
        ProcArray). PostgreSQL documentation, "System Information Functions and Operators", Transaction ID and
        Snapshot Information Functions (``pg_current_snapshot``, ``pg_snapshot_xip``, ``pg_snapshot_xmax``,
        ``pg_visible_in_snapshot``), and "Routine Vacuuming" for ``age``. Read-only transactions have no
        transaction id and are not waited for. A transaction still running after the bound was not in that window
        (a commit there leaves the ProcArray within microseconds): its commit comes after the position, in the
        stream. The ids are the whole server's, so a long transaction in any database (or a prepared one) makes
        this wait the whole bound."""
        self.ensure_slot()
        conn = self._control
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        taken = conn.execute(
            "SELECT s::text, age(greatest(pg_snapshot_xmax(s)::text::bigint % 4294967296, 3)::text::xid)"
            " FROM pg_current_snapshot() AS s"
        ).fetchone()
        assert taken is not None
        self._wait_ended(str(taken[0]), int(taken[1]))
        return [lsn_int(row[0]), 0], row[0]

    def _wait_ended(self, snapshot: str, age: int) -> None:
        """Wait until the transactions running in ``snapshot`` (``xmin:xmax:xip,...``) have ended, at most
        :attr:`VISIBILITY_WAIT_S`; ``age``: how far the next transaction id was past ``xmax`` (or past the
        epoch's first normal id when ``xmax`` is below it), read with it (:meth:`current_position`)."""
        _, xmax_text, xip = snapshot.split(":")
        xmax = int(xmax_text)
        next_xid = xmax - xmax % 2**32 + max(xmax % 2**32, 3) + age
        running = len([x for x in xip.split(",") if x]) + max(next_xid - xmax, 0)
        if not running:
            return
        conn = self._control
        started = time.monotonic()
        while True:
            # The ids of ``snapshot`` not visible to a new one: those the new one lists, and those from its xmax.
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_snapshot_xip(c.s) AS x"
                "         WHERE x IN (SELECT pg_snapshot_xip(%(taken)s::pg_snapshot))"
                "            OR (x >= pg_snapshot_xmax(%(taken)s::pg_snapshot) AND x < %(next)s::text::xid8))"
                "     + greatest(%(next)s - pg_snapshot_xmax(c.s)::text::bigint, 0)"
                " FROM (SELECT pg_current_snapshot() AS s) AS c",
                {"taken": snapshot, "next": next_xid},
            ).fetchone()
            left = int(row[0]) if row else 0
            waited = time.monotonic() - started
            if left == 0:
                log.debug("capture %s: waited %.3f s for %d running transactions to end", self.side, waited, running)
                return
            if waited >= self.VISIBILITY_WAIT_S:
                log.info(
                    "capture %s: %d of %d transactions running when the position was read still run after %.1f s;"
                    " not waiting longer (a commit of theirs comes after the position, so the stream has it)",
                    self.side,
                    left,
                    running,
                    waited,
                )
                return
            time.sleep(self.VISIBILITY_POLL_S)

    def end_position(self) -> tuple[Position, str]:
        """``[lsn, 0]`` and its ``X/Y`` text: a position the stream reaches only after every transaction committed
        before this call, at once (``--once`` reads up to it).

        Not :meth:`current_position`: ``pg_current_wal_lsn()`` is how far the WAL is *written*, and with
        ``synchronous_commit = off`` a commit record can still sit in the WAL buffers after its COMMIT returned,
        behind that position; and peek decodes only the *flushed* WAL. So this commits a marker instead: a
        transactional logical message (prefix ``sluice-heartbeat``, which the peek asks for) under
        ``synchronous_commit = local``, whose commit flushes the WAL up to it. Every transaction committed
        earlier has its commit record before the marker, so decoding (in commit order) yields it before the
        marker's message, whose ``lsn`` (the end of its record) is the position returned.

        Creates the slot first when missing (so it decodes the marker). Raises :class:`SourceNotReady` when the
        slot cannot be created, :class:`SyncError` when the marker cannot be written (transient when the
        connection failed)."""
        self.ensure_slot()
        conn = self._control
        try:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = local")  # flush, without waiting for a standby
                row = conn.execute(
                    "SELECT pg_logical_emit_message(true, %s, %s)::text", [HEARTBEAT_PREFIX, f"{self.slot} end"]
                ).fetchone()
        except psycopg.Error as exc:
            raise SyncError(
                f"cannot write the end marker of capture ({self.side}) to PostgreSQL: {str(exc).strip()}",
                transient=isinstance(exc, psycopg.OperationalError),
            ) from exc
        assert row is not None
        return [lsn_int(row[0]), 0], row[0]

    def acknowledge(self, position: Position) -> None:
        """Advance the slot to ``position`` (a whole transaction) or to the start of its transaction (a part of it).

        A position this capture did not produce since it started, other than a heartbeat's, is ignored."""
        with self._lock:
            self._pending_ack = position
            self._advance()

    def _advance(self) -> None:
        position, decoder = self._pending_ack, self._decoder
        if position is None:
            return
        lsn, index = position[0], position[1]
        target: int | None = lsn
        if decoder is not None and lsn in decoder.first_lsn:
            whole = decoder.complete.get(lsn)
            if whole is None or index < whole:
                target = decoder.first_lsn[lsn]
        elif index != 0:
            target = None
        if target is not None:
            slot = self._slot_row()
            if slot is None:
                raise PositionLost(f"replication slot {self.slot} no longer exists: {RESNAPSHOT}")
            if target > lsn_int(slot[1]):
                try:
                    self._control.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", [self.slot, lsn_text(target)])
                except psycopg.errors.ObjectInUse:
                    return  # a peek holds the slot now: the stream retries before its next peek
            if decoder is not None:
                decoder.forget(target)
        self._pending_ack = None

    # snapshot -------------------------------------------------------------------------------------------

    def snapshot(self, table: TableSchema, after_key: list[Any] | None, chunk_rows: int) -> Iterator[SnapshotChunk]:
        """Key-ordered chunks of ``chunk_rows`` rows, each read in its own REPEATABLE READ transaction through a
        server-side cursor; values are read as text and converted like the stream's (:mod:`sluice.cdc.pg_types`)."""
        conn = self._connect("snapshot", autocommit=False)
        columns = table.columns
        converters = [pg_types.converter(c.type) for c in columns]
        names = [c.name for c in columns]
        key_at = [names.index(k) for k in table.key]
        qualified = sql.SQL("{}.{}").format(sql.Identifier(table.namespace), sql.Identifier(table.name))
        select = sql.SQL("SELECT {} FROM {} AS src").format(sql.SQL(", ").join(_as_text(c) for c in columns), qualified)
        order = sql.SQL(", ").join(sql.Identifier("src", k) for k in table.key)  # not the ::text output columns
        estimate_row = self._control.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
            [f'"{table.namespace}"."{table.name}"'],
        ).fetchone()
        estimate = int(estimate_row[0]) if estimate_row else None
        read = 0
        while True:
            with conn.transaction():
                lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                assert lsn is not None
                source = Source(
                    connector="postgresql",
                    name=self.side,
                    position=[lsn_int(lsn[0]), 0],
                    position_text=lsn[0],
                    commit_ts_us=int(time.time() * 1_000_000),
                    origin=f"{self.sync}/{self.side}",
                    snapshot=True,
                )
                statement, params = select, []
                if table.key:
                    if after_key is not None:
                        statement = sql.SQL("{} WHERE ({}) > ({})").format(
                            statement, order, sql.SQL(", ").join(self._key_param(table, k) for k in table.key)
                        )
                        params = [_key_value(table, k, v) for k, v in zip(table.key, after_key, strict=True)]
                    statement = sql.SQL("{} ORDER BY {} LIMIT {}").format(statement, order, sql.Literal(chunk_rows))
                with conn.cursor(name="sluice_snapshot") as cursor:
                    cursor.itersize = min(chunk_rows, self.FETCH_ROWS)
                    cursor.execute(statement, params)
                    rows: list[list[Any]] = []
                    invalid = 0
                    while raw := cursor.fetchmany(self.FETCH_ROWS):
                        # Column by column: a NULL that was not NULL in the text had no canonical form (counted).
                        values = []
                        for convert, texts in zip(converters, zip(*raw, strict=True), strict=True):
                            out = list(map(convert, texts))
                            invalid += out.count(None) - texts.count(None)
                            values.append(out)
                        rows += map(list, zip(*values, strict=True))
                        if not table.key and len(rows) >= chunk_rows:
                            read += len(rows)
                            yield self._chunk(table, names, rows, None, read, estimate, source, invalid=invalid)
                            rows, invalid = [], 0
            read += len(rows)
            done = not table.key or len(rows) < chunk_rows
            last_key = [rows[-1][i] for i in key_at] if rows and table.key else after_key
            yield self._chunk(table, names, rows, last_key, read, estimate, source, invalid=invalid, done=done)
            if done:
                return
            after_key = last_key

    @staticmethod
    def _chunk(
        table: TableSchema,
        names: list[str],
        rows: list[list[Any]],
        last_key: list[Any] | None,
        read: int,
        estimate: int | None,
        source: Source,
        invalid: int,
        done: bool = False,
    ) -> SnapshotChunk:
        return SnapshotChunk(
            table.qualified, [], last_key, read, estimate, done, invalid, columns=names, rows=rows, source=source
        )

    @staticmethod
    def _key_param(table: TableSchema, name: str) -> sql.Composable:
        column = table.column(name)
        assert column is not None
        return sql.SQL("%s::" + column.source_type)

    # stream ---------------------------------------------------------------------------------------------

    def stream(self, start: Position, tables: Sequence[TableSchema], max_wait_s: float) -> Iterator[ChangeBatch]:
        """Changes after ``start`` (see :mod:`sluice.cdc.pg_stream`); a batch at least every ``max_wait_s`` seconds.

        Raises :class:`PositionLost` when the slot is gone or was advanced past ``start``."""
        slot = self._slot_row()
        if slot is None:
            raise PositionLost(f"replication slot {self.slot} does not exist (dropped?): {RESNAPSHOT}")
        if self.slot_created_at is not None and start[0] < lsn_int(self.slot_created_at):
            raise PositionLost(
                f"replication slot {self.slot} did not exist (dropped?) and was created again at {self.slot_created_at}, "
                f"after position {lsn_text(start[0])}: the changes in between are gone; {RESNAPSHOT}"
            )
        if start[0] < lsn_int(slot[1]):
            raise PositionLost(
                f"replication slot {self.slot} was advanced to {slot[1]}, past position {lsn_text(start[0])}: "
                f"the changes in between are gone; {RESNAPSHOT}"
            )
        self.ensure_publication(tables)
        decoder_ = StreamDecoder(start, list(tables), self.side, f"{self.sync}/{self.side}", self.marker_table, self._read_table)
        self._decoder = decoder_
        patterns = sorted({f"{t.namespace}.*" for t in tables} | ({self.marker_table} if self.marker_table else set()))
        add_tables = add_tables_option(patterns) if patterns else "*.*"
        conn = self._connect("stream", autocommit=False)
        limit = self.PEEK_ROWS
        last_yield = last_move = time.monotonic()
        sleep_s = self.IDLE_SLEEP_S[0]
        decode = w2j.decode
        while True:
            with self._lock:
                self._advance()
            before = list(decoder_.last)
            statement, options = peek_sql(limit)
            rows = 0
            with conn.transaction(), conn.cursor(name="sluice_peek") as cursor:
                cursor.itersize = self.FETCH_ROWS
                cursor.execute(statement, [self.slot, *options, add_tables])
                for row_lsn, data in cursor:
                    rows += 1
                    decoder_.feed(row_lsn, decode(data))
                    if len(decoder_.events) >= self.BATCH_EVENTS:
                        yield self._batch(decoder_)
                        last_yield = time.monotonic()
            now = time.monotonic()
            moved = decoder_.last != before
            if moved:
                last_move = now
            if decoder_.events or now - last_yield >= max_wait_s:
                yield self._batch(decoder_)
                last_yield = time.monotonic()
            if rows >= limit:
                # a full peek: more is waiting. Unacknowledged rows are read again, so grow the window when
                # the peek brought little that was new.
                limit = limit * 2 if not moved or rows > 2 * self.PEEK_ROWS else self.PEEK_ROWS
                sleep_s = self.IDLE_SLEEP_S[0]
                continue
            limit = self.PEEK_ROWS
            if now - last_move >= max_wait_s / 2:
                self._control.execute(
                    "SELECT pg_logical_emit_message(false, %s, %s)", [HEARTBEAT_PREFIX, f"{self.slot} {now:.3f}"]
                )
                last_move = now
            if moved:
                sleep_s = self.IDLE_SLEEP_S[0]
                continue
            time.sleep(sleep_s)
            sleep_s = min(sleep_s * 2, self.IDLE_SLEEP_S[1], max_wait_s)

    def _batch(self, decoder_: StreamDecoder) -> ChangeBatch:
        events, echo, invalid, invalid_by_table = decoder_.take()
        position = list(decoder_.last)
        return ChangeBatch(
            events=events,
            position=position,
            position_text=lsn_text(position[0]),
            commit_ts_us=decoder_.commit_ts_us,
            skipped_echo=echo,
            invalid_dates=invalid,
            invalid_dates_by_table=invalid_by_table,
        )


def _as_text(column: Column) -> sql.Composable:
    """The column's text output in a snapshot, as wal2json prints it (``char(n)::text`` would drop the padding)."""
    if column.source_type == "character" or column.source_type.startswith("character("):
        return sql.SQL("bpcharout({})::text").format(sql.Identifier(column.name))
    return sql.SQL("{}::text").format(sql.Identifier(column.name))


def _key_value(table: TableSchema, name: str, value: Any) -> Any:
    """A canonical key value as a parameter of the snapshot's keyset condition."""
    column = table.column(name)
    if column is not None and column.type.startswith("timestamp(") and isinstance(value, int):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)
    if column is not None and column.type.startswith("bit(") and isinstance(value, int):
        return format(value, f"0{column.type[4:-1]}b")
    return value
