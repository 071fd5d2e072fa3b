"""In-memory Capture and Apply for testing the sync runtime without servers.

A :class:`FakeDb` is one database: tables of rows keyed by primary key and a change log (the "binlog").
Positions are ``[log index]``. Writes made by :class:`FakeApply` go to the log as the sync's own
transactions (``echo``), which :class:`FakeCapture` given a ``marker_table`` leaves out, as the real
plugins do with their positions table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.cdc.base import (
    Apply,
    ApplyResult,
    Capture,
    ChangeBatch,
    Conflict,
    PositionLost,
    Resolver,
    SnapshotChunk,
    SyncError,
    TableRef,
)
from sluice.cdc.events import ChangeEvent, Column, Event, Position, SchemaChange, Source, TableSchema

POISON = "POISON"


def schema(namespace: str, name: str, key: bool = True) -> TableSchema:
    """A table ``(id int64, name string, n int64)``."""
    return TableSchema(
        namespace,
        name,
        [Column("id", "int64", nullable=False), Column("name", "string"), Column("n", "int64")],
        ["id"] if key else [],
    )


@dataclass
class LogEntry:
    table: str
    op: str
    key: list[Any]
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ts_us: int
    echo: bool = False
    schema_change: SchemaChange | None = None


@dataclass
class FakeDb:
    """One database: ``tables`` by qualified name, rows by key tuple, and the change log."""

    name: str
    tables: dict[str, TableSchema] = field(default_factory=dict)
    rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    purged: int = 0
    problems: list[str] = field(default_factory=list)
    positions: dict[tuple[str, str, str], tuple[Position | None, list[Any] | None, bool]] = field(default_factory=dict)
    dead_letters: list[tuple[str, list[Any], str]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    bad_schema_tables: set[str] = field(default_factory=set)
    bulk_snapshot: bool = False
    """Capture gives snapshot chunks as value lists (``SnapshotChunk.rows``), like the SQL captures, not events."""
    position_lag: int = 0
    """Log entries ``current_position`` leaves out (``end_position`` does not): PostgreSQL's written WAL position
    (``pg_current_wal_lsn()``) behind a commit that returned, with ``synchronous_commit = off``."""

    def create(self, table: TableSchema) -> None:
        with self.lock:
            self.tables[table.qualified] = table
            self.rows.setdefault(table.qualified, {})

    def key_of(self, table: str, row: dict[str, Any]) -> tuple[Any, ...]:
        schema = self.tables[table]
        cols = schema.key or [c.name for c in schema.columns]
        return tuple(row[c] for c in cols)

    def write(self, table: str, row: dict[str, Any] | None, key: tuple[Any, ...] | None = None, echo: bool = False) -> None:
        """Insert or update ``row`` (``None``: delete ``key``), logged like a source commit."""
        with self.lock:
            rows = self.rows[table]
            if row is None:
                assert key is not None
                before = rows.pop(key, None)
                if before is None:
                    return
                self.log.append(LogEntry(table, "d", list(key), before, None, _now_us(), echo))
                return
            k = self.key_of(table, row)
            before = rows.get(k)
            rows[k] = dict(row)
            self.log.append(LogEntry(table, "u" if before else "c", list(k), before, dict(row), _now_us(), echo))

    def alter(self, table: str, change: str) -> None:
        """Log a schema change of ``table`` (``other`` is one apply cannot do)."""
        with self.lock:
            schema = self.tables[table]
            event = SchemaChange(table, schema, change, Source("fake", self.name, [0], "", _now_us()))
            self.log.append(LogEntry(table, "schema", [], None, None, _now_us(), schema_change=event))

    def snapshot_rows(self, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self.rows.get(table, {}).items()}


def _now_us() -> int:
    return time.time_ns() // 1000


class FakeCapture(Capture):
    def __init__(self, db: FakeDb, sync: str, side: str, marker_table: str | None) -> None:
        self.db, self.sync, self.side, self.marker_table = db, sync, side, marker_table
        self.acknowledged: Position | None = None
        self.calls: list[tuple[str, list[str]]] = []
        """``("prepare", tables)`` and ``("position", [])`` in call order."""

    def check(self) -> list[str]:
        return list(self.db.problems)

    def prepare(self, tables: Sequence[TableSchema]) -> None:
        self.calls.append(("prepare", [t.qualified for t in tables]))

    def list_tables(self) -> list[TableSchema]:
        with self.db.lock:
            return list(self.db.tables.values())

    def current_position(self) -> tuple[Position, str]:
        self.calls.append(("position", []))
        with self.db.lock:
            index = max(len(self.db.log) - self.db.position_lag, 0)
            return [index], str(index)

    def end_position(self) -> tuple[Position, str]:
        with self.db.lock:
            return [len(self.db.log)], str(len(self.db.log))

    def _source(self, pos: int, ts: int, snapshot: bool = False) -> Source:
        return Source("fake", self.side, [pos], str(pos), ts, origin=f"{self.sync}/{self.side}", snapshot=snapshot)

    def snapshot(self, table: TableSchema, after_key: list[Any] | None, chunk_rows: int) -> Iterator[SnapshotChunk]:
        position, _ = self.current_position()
        rows = sorted(self.db.snapshot_rows(table.qualified).items())
        if after_key is not None:
            rows = [(k, v) for k, v in rows if list(k) > after_key]
        total = len(rows)
        if not rows:
            yield SnapshotChunk(table.qualified, [], after_key, 0, total, done=True)
            return
        for start in range(0, len(rows), chunk_rows):
            part = rows[start : start + chunk_rows]
            source = self._source(position[0], _now_us(), snapshot=True)
            done = start + chunk_rows >= len(rows)
            last = list(part[-1][0])
            if self.db.bulk_snapshot:
                names = [column.name for column in table.columns]
                values = [[v.get(name) for name in names] for _, v in part]
                yield SnapshotChunk(
                    table.qualified, [], last, start + len(part), total, done, columns=names, rows=values, source=source
                )
                continue
            events = [ChangeEvent("r", table.qualified, list(k), source, after=v) for k, v in part]
            yield SnapshotChunk(table.qualified, events, last, start + len(part), total, done=done)

    def stream(self, start: Position, tables: Sequence[TableSchema], max_wait_s: float) -> Iterator[ChangeBatch]:
        index = start[0]
        if index < self.db.purged:
            raise PositionLost(f"position {index} was purged: run `sluice sync PATH --resnapshot` to copy the tables again")
        wanted = {t.qualified for t in tables}
        while True:
            deadline = time.monotonic() + max_wait_s
            while True:
                with self.db.lock:
                    entries = self.db.log[index : index + 200]
                if entries or time.monotonic() >= deadline:
                    break
                time.sleep(0.005)
            events: list[Event] = []
            ts = echo = 0
            for offset, entry in enumerate(entries, start=index + 1):
                ts = entry.ts_us
                if entry.echo and self.marker_table is not None:
                    echo += 1
                    continue
                if entry.schema_change is not None:
                    if entry.table in wanted or entry.schema_change.change == "create":
                        wanted.add(entry.table)  # a new table: streamed from its creation on, as the real captures do
                        events.append(entry.schema_change)
                    continue
                if entry.table not in wanted:
                    continue
                events.append(
                    ChangeEvent(
                        entry.op,  # type: ignore[arg-type]
                        entry.table,
                        entry.key,
                        self._source(offset, entry.ts_us),
                        before=entry.before,
                        after=entry.after,
                    )
                )
            index += len(entries)
            yield ChangeBatch(events, [index], str(index), ts, skipped_echo=echo)

    def acknowledge(self, position: Position) -> None:
        self.acknowledged = position

    def close(self) -> None:
        pass


class FakeApply(Apply):
    """Writes into ``db``; a row whose ``name`` is ``POISON`` goes to the dead letters."""

    def __init__(self, db: FakeDb, sync: str, side: str) -> None:
        self.db, self.sync, self.side = db, sync, side

    def _pkey(self, table: TableRef) -> tuple[str, str, str]:
        return (self.sync, self.side, table.source.qualified)

    def prepare(self, tables: Sequence[TableRef]) -> None:
        with self.db.lock:
            for ref in tables:
                if ref.target_qualified not in self.db.tables:
                    self.db.create(TableSchema(ref.target_namespace, ref.target_name, ref.source.columns, ref.source.key))

    def stored_position(self, table: TableRef) -> tuple[Position | None, list[Any] | None, bool]:
        with self.db.lock:
            return self.db.positions.get(self._pkey(table), (None, None, False))

    def _row(self, table: TableRef, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in table.drop}
        for col in table.mask:
            out[col] = f"masked:{out[col]}"
        return out

    def apply_batch(
        self, table: TableRef, events: Sequence[ChangeEvent], resolver: Resolver | None = None, *, partition: int = 0
    ) -> ApplyResult:
        result = ApplyResult()
        target = table.target_qualified
        with self.db.lock:
            position, last_key, done = self.stored_position(table)
            pending: list[ChangeEvent] = []
            for event in events:
                if event.op != "r" and position is not None and event.source.position <= position:
                    result.skipped += 1
                    continue
                pending.append(event)
            if resolver is not None:
                conflicts = []
                for event in pending:
                    if event.op == "r":
                        continue
                    current = self.db.rows[target].get(tuple(event.key))
                    expected = event.before if event.op in ("u", "d") else None
                    if current != expected:
                        conflicts.append(Conflict(event, current))
                if conflicts:
                    verdict = dict(zip([id(c.event) for c in conflicts], resolver(conflicts), strict=True))
                    result.conflicts = len(conflicts)
                    pending = [e for e in pending if verdict.get(id(e), True)]
            for event in pending:
                row = event.after
                if row is not None and row.get("name") == POISON:
                    self.db.dead_letters.append((table.source.qualified, event.key, "poison value"))
                    result.dead_letters += 1
                    continue
                if event.op == "d":
                    self.db.write(target, None, tuple(event.key), echo=True)
                else:
                    assert row is not None
                    self.db.write(target, self._row(table, row), echo=True)
                result.applied[event.op] = result.applied.get(event.op, 0) + 1
            for event in events:
                if event.op == "r":  # as SqlApply: a snapshot read stores its key, never its position
                    last_key = event.key
                elif position is None or event.source.position > position:
                    position = event.source.position
            self.db.positions[self._pkey(table)] = (position, last_key, done)
        return result

    def apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        if change.change == "other" or table.source.qualified in self.db.bad_schema_tables:
            raise SyncError(f"table {table.source.qualified}: cannot apply {change.change}", table=table.source.qualified)

    def skip_to(self, table: TableRef, position: Position, position_text: str, partitions: int = 1) -> None:
        with self.db.lock:
            stored, last_key, done = self.stored_position(table)
            if stored is None or stored < position:
                self.db.positions[self._pkey(table)] = (position, last_key, done)

    def reset(self, table: TableRef) -> None:
        with self.db.lock:
            self.db.positions.pop(self._pkey(table), None)
            self.db.rows[table.target_qualified] = {}

    def close(self) -> None:
        pass


@dataclass
class FakeWorld:
    """Databases by connection name, and factories the runtime builds its plugins with."""

    dbs: dict[str, FakeDb]
    captures: list[FakeCapture] = field(default_factory=list)

    def capture(self, url: str, options: object, sync: str, side: str, marker_table: str | None) -> Capture:
        capture = FakeCapture(self.dbs[side], sync, side, marker_table)
        self.captures.append(capture)
        return capture

    def apply(self, url: str, options: object, sync: str, side: str) -> Apply:
        return FakeApply(self.dbs[side], sync, side)
