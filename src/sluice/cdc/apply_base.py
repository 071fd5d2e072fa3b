"""The apply flow both SQL targets share (:class:`SqlApply`); the dialects write the SQL.

One :meth:`SqlApply.apply_batch` is one target transaction:

1. write the table's row of ``<namespace>.positions`` first (the echo marker a both-ways capture on this
   database skips transactions by) and read the stored position from it (the row of the batch's partition of
   the table's topic, :mod:`sluice.cdc.apply_positions`);
2. skip stream changes at or before that position; snapshot reads (``r``) always apply (idempotent upserts);
3. with a resolver (both-ways), read the target rows of the batch's keys in one locking query, hand the
   changes whose ``before`` image (or, for an insert, the existing row) differs to the resolver, each key's
   changes in order, drop the losers, record every conflict in ``<namespace>.conflicts``
   (:mod:`sluice.cdc.apply_conflicts`; a deadlock or serialization failure runs the batch again);
4. reduce the batch to its net effect per key (:func:`~sluice.cdc.apply_common.net_effect`) and apply each
   segment: truncate, one bulk delete, one bulk upsert per set of present columns;
5. a bulk statement the target refuses is retried on halves inside savepoints until the refused rows are
   single (bisection, O(k log n) statements for k bad rows); each goes to ``<namespace>.dead_letters`` with
   the database's message, the rest applies;
6. store the last stream position / snapshot key and commit. Any other error rolls everything back.

Snapshot rows (:meth:`SqlApply.apply_rows`) skip steps 2-4: they are written as they come, one bulk upsert per
run of :class:`~sluice.cdc.events.SnapshotRows` (PostgreSQL: binary ``COPY`` into the staging table, then
the merge), refused rows bisected into the dead letters as in step 5; snapshot rows older than the stored
position (a stream change after them was applied, and their delivery is a repeat after a crash) are skipped.

Not thread-safe: one instance holds one connection; run one per worker.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from sluice.cdc.apply_common import (
    Key,
    Segment,
    Upsert,
    net_effect,
    no_key_error,
    target_columns,
)
from sluice.cdc.apply_conflicts import ConflictSteps, to_json
from sluice.cdc.apply_positions import PositionRows
from sluice.cdc.apply_schema import SchemaSteps
from sluice.cdc.base import Apply, ApplyResult, Resolver, SyncError, TableRef, first_line
from sluice.cdc.events import ChangeEvent, Column, Position, SnapshotRows
from sluice.cdc.plugins import ApplyOptions

_event_of_upsert = attrgetter("event")
_op_of = attrgetter("op")


class SqlApply(PositionRows, SchemaSteps, ConflictSteps, Apply):
    """The apply flow over a SQL target; subclasses give the connection and the statements."""

    def __init__(self, options: ApplyOptions, sync: str, side: str) -> None:
        self.options = options
        self.sync = sync
        self.side = side

    # ----------------------------------------------------------------------------------- dialect seam

    @abstractmethod
    def _begin(self, name: str, partition: int) -> Position | None:
        """Start the transaction by writing the positions row of ``name``'s ``partition``; its stored stream position."""

    now_sql = "now()"
    """The dialect's current time, microseconds kept (``updated_at`` of the positions row)."""

    def _finish(
        self,
        name: str,
        partition: int,
        position: Position | None,
        snapshot_key: list[Any] | None,
        streaming: bool,
        position_text: str = "",
    ) -> None:
        """Store the new position (and how the source shows it) / snapshot key (``None``: unchanged) and commit."""
        self._executemany(
            f"UPDATE {self._quote(self.options.namespace)}.positions SET position = COALESCE(%s, position),"
            " position_text = COALESCE(%s, position_text),"
            " snapshot_last_key = COALESCE(%s, snapshot_last_key), snapshot_done = snapshot_done OR %s,"
            f" updated_at = {self.now_sql} WHERE sync = %s AND side = %s AND table_name = %s AND bus_partition = %s",
            [
                (
                    None if position is None else to_json(position),
                    None if position is None else position_text,
                    None if snapshot_key is None else to_json(snapshot_key),
                    streaming,
                    self.sync,
                    self.side,
                    name,
                    partition,
                )
            ],
        )
        self._commit()

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _savepoint(self) -> None: ...

    @abstractmethod
    def _release(self) -> None: ...

    @abstractmethod
    def _rollback_savepoint(self) -> None: ...

    def _lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection to the target is gone (a restart, a failover, a network cut):
        the batch is rolled back with it and may run again on a new connection."""
        return False

    def lost(self, exc: BaseException) -> bool:
        return self._lost(exc)

    def _isolate(self) -> None:
        """Called first in the transaction of a batch that resolves conflicts (PostgreSQL: repeatable read)."""

    def _contended(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a deadlock or serialization failure: the batch may simply run again."""
        return False

    @abstractmethod
    def _row_error(self, exc: BaseException) -> str | None:
        """The reason when ``exc`` is the target refusing a row (constraint, range, encoding), else ``None``."""

    @abstractmethod
    def _definition_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the target refusing a statement for its table's definition (a key, column or table
        that does not match the source's schema, a missing privilege): only that table can stop for it."""

    @abstractmethod
    def _truncate(self, table: TableRef) -> None: ...

    @abstractmethod
    def _upsert(self, table: TableRef, columns: list[Column], rows: list[dict[str, Any]], merge: bool) -> None:
        """Write ``rows`` (only ``columns``); ``merge``: insert or update by key, else plain insert."""

    @abstractmethod
    def _delete(self, table: TableRef, keys: list[Key]) -> None: ...

    keeps_in_insert = False
    """Whether an upsert with kept columns must name them (MySQL strict mode refuses ``INSERT ... ON DUPLICATE
    KEY UPDATE`` without a NOT NULL column that has no default, even for a row that exists): then it reads them
    from the key's own row (:meth:`_upsert_moved`, ``outer``)."""

    @abstractmethod
    def _upsert_moved(
        self,
        table: TableRef,
        columns: list[Column],
        kept: list[Column],
        rows: list[dict[str, Any]],
        origins: list[Key],
        outer: bool = False,
    ) -> None:
        """Upsert ``rows`` (``columns``), the ``kept`` columns of each read from the target row of its origin key
        in the same statement; a row whose origin row is missing is not written, or with ``outer`` written with
        NULL in the kept columns."""

    @abstractmethod
    def _key_columns(self, table: TableRef) -> list[Column]: ...

    @abstractmethod
    def _delete_row(self, table: TableRef, row: dict[str, Any]) -> int:
        """Delete one row equal to ``row`` on every target column (tables without key, ``full-row``)."""

    @abstractmethod
    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def _quote(self, name: str) -> str:
        """An identifier quoted for the dialect."""

    def _record(self, table: str, sql_table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into ``<namespace>.<sql_table>``: dead_letters (key, op, event, reason) or
        conflicts (key, event, current, applied), in the batch's transaction."""
        if not rows:
            return
        columns = ("key", "op", "event", "reason") if sql_table == "dead_letters" else ("key", "event", "current", "applied")
        names = ", ".join(self._quote(name) for name in ("sync", "side", "table_name", *columns))
        sql = f"INSERT INTO {self._quote(self.options.namespace)}.{sql_table} ({names}) VALUES ({', '.join(['%s'] * 7)})"
        self._executemany(sql, [(self.sync, self.side, table, *row) for row in rows])

    @abstractmethod
    def _commit(self) -> None: ...

    # ---------------------------------------------------------------------------------------- flow

    def apply_batch(
        self, table: TableRef, events: Sequence[ChangeEvent], resolver: Resolver | None = None, *, partition: int = 0
    ) -> ApplyResult:
        result = ApplyResult()
        name = table.source.qualified
        if not table.source.key and table.no_key == "refuse":
            raise no_key_error(table)
        try:
            if resolver is not None and table.source.key:
                self._isolate()
            stored = self._begin(name, partition)
            todo: list[ChangeEvent] = []
            position: Position | None = None
            position_text = ""
            snapshot_key: list[Any] | None = None
            for event in events:
                if event.op == "r":
                    snapshot_key = event.key
                elif stored is not None and event.source.position <= stored:
                    result.skipped += 1
                    continue
                else:
                    position, position_text = event.source.position, event.source.position_text
                todo.append(event)
            if resolver is not None and todo and table.source.key:
                todo = self._resolve(table, todo, resolver, result)
            if table.source.key:
                for segment in net_effect(todo, table.source.key):
                    self._apply_segment(table, segment, result)
            else:
                self._apply_keyless(table, todo, result)
            self._finish(name, partition, position, snapshot_key, position is not None, position_text)
        except BaseException as exc:
            self._fail(name, exc)
            if self._contended(exc):  # a local write met the batch's locks: run the batch again (apply_loop)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SyncError(
                    f"table {name}: a write on the target kept meeting the batch ({reason}); restart the sync",
                    table=name,
                    transient=True,
                ) from exc
            self._raise_for_table(table, exc)
            raise
        return result

    def apply_rows(self, table: TableRef, batches: Sequence[SnapshotRows], *, partition: int = 0) -> ApplyResult:
        """Snapshot rows as bulk upserts by key (plain inserts for a table without key), one per run of batches
        with the same columns, in one transaction that also stores the last row's key. Snapshot keys are unique,
        so no net-effect pass; refused rows go to the dead letters (bisection, :meth:`_guarded`).

        Batches read at a position older than the stored one are skipped (``result.skipped`` counts their
        rows): the partition applied a stream change that came after them, so this is a delivery again after a
        crash between the target's commit and the bus's, and writing them would undo newer changes."""
        result = ApplyResult()
        name = table.source.qualified
        key = table.source.key
        if not key and table.no_key == "refuse":
            raise no_key_error(table)
        try:
            stored = self._begin(name, partition)
            if stored is not None:
                old = [batch for batch in batches if batch.source.position < stored]
                if old:
                    result.skipped += sum(len(batch.rows) for batch in old)
                    batches = [batch for batch in batches if not batch.source.position < stored]
            start = 0
            while start < len(batches):
                end = start + 1
                while end < len(batches) and batches[end].columns == batches[start].columns:
                    end += 1
                done = self._upsert_snapshot(table, batches[start:end], result)
                result.applied["r"] = result.applied.get("r", 0) + done
                start = end
            snapshot_key = batches[-1].last_key() if batches else None
            self._finish(name, partition, None, snapshot_key, False)
        except BaseException as exc:
            self._fail(name, exc)
            self._raise_for_table(table, exc)
            raise
        return result

    def skip_to(self, table: TableRef, position: Position, position_text: str, partitions: int = 1) -> None:
        name = table.source.qualified
        for partition in range(max(1, partitions)):
            try:  # the row is written first (locked), so an apply of the table meanwhile stores its position after
                stored = self._begin(name, partition)
                newer = stored is None or stored < position
                self._finish(name, partition, position if newer else None, None, False, position_text)
            except BaseException as exc:
                self._fail(name, exc)
                raise

    def _fail(self, name: str, exc: BaseException) -> None:
        """Roll the batch of table ``name`` back after ``exc``; a lost target connection becomes a transient
        :class:`SyncError` without a table (the apply loop reconnects with backoff and applies the batch again:
        nothing of it was committed)."""
        lost = self._lost(exc)
        try:
            self._rollback()
        except Exception:
            if not lost:
                raise
        if lost:
            reason = first_line(exc)
            raise SyncError(f"the target of sync {self.sync} went away while applying {name} ({reason})", transient=True) from exc

    def _raise_for_table(self, table: TableRef, exc: BaseException) -> None:
        """Raise a :class:`SyncError` naming the table (the apply loop then stops that table only, not the sync)
        when ``exc`` is the target table's definition refusing the changes (:meth:`_definition_error`); a
        target whose primary key is not the source's refuses every upsert by the source's key."""
        if isinstance(exc, SyncError) or not isinstance(exc, Exception) or not self._definition_error(exc):
            return
        name = table.source.qualified
        reason = first_line(exc)
        raise SyncError(
            f"table {name}: the target table {table.target_qualified} refused the changes ({reason}); make it match "
            f"the source (key {', '.join(table.source.key) or 'none'}) or run 'sluice sync resync PATH {name}' "
            "(PATH: the project), which gives it the source's key and columns and copies it again",
            table=name,
        ) from exc

    def _upsert_snapshot(self, table: TableRef, batches: Sequence[SnapshotRows], result: ApplyResult) -> int:
        """Upsert the rows of ``batches`` (all with the same columns); rows written."""
        first = batches[0]
        at = {column: i for i, column in enumerate(first.columns)}
        columns = [column for column in target_columns(table) if column.name in at]
        picks = [at[column.name] for column in columns]
        records: list[Sequence[Any]] = []
        for batch in batches:
            if picks == list(range(len(batch.columns))):
                records += batch.rows
            else:  # dropped columns (or a column order of its own): the target's columns only
                records += [[row[i] for i in picks] for row in batch.rows]
        names = [column.name for column in columns]
        key_at = [names.index(name) for name in table.source.key if name in names]

        def event_of(record: Sequence[Any]) -> ChangeEvent:
            after = dict(zip(names, record, strict=True))
            return ChangeEvent("r", first.table, [record[i] for i in key_at], first.source, after=after)

        merge = bool(table.source.key)
        return self._guarded(table, records, lambda part: self._upsert_records(table, columns, part, merge), event_of, result)

    def _upsert_records(self, table: TableRef, columns: list[Column], records: list[Sequence[Any]], merge: bool) -> None:
        """:meth:`_upsert` of ``records`` (one sequence of canonical values per row, in ``columns`` order)."""
        names = [column.name for column in columns]
        self._upsert(table, columns, [dict(zip(names, record, strict=True)) for record in records], merge)

    def _apply_segment(self, table: TableRef, segment: Segment, result: ApplyResult) -> None:
        """Truncate, deletes, upserts. Upserts whose kept columns are read from another key's row (an update
        that changed the key and left TOASTed values out, :attr:`Upsert.origin`) are written before the deletes
        of those old keys, the other deletes first."""
        if segment.truncate:
            self._truncate(table)
            result.applied["t"] = result.applied.get("t", 0) + 1
        moved: list[Upsert] = []
        upserts = list(segment.upserts.values())
        deletes = segment.deletes
        if any(upsert.origin is not None for upsert in upserts):
            moved = [upsert for upsert in upserts if upsert.origin is not None]
            upserts = [upsert for upsert in upserts if upsert.origin is None]
            origins = {upsert.origin for upsert in moved}
            self._delete_keys(table, {key: event for key, event in deletes.items() if key not in origins}, result)
            self._upsert_moved_groups(table, moved, result)
            deletes = {key: event for key, event in deletes.items() if key in origins}
        self._delete_keys(table, deletes, result)
        self._upsert_groups(table, upserts, result)

    def _delete_keys(self, table: TableRef, deletes: dict[Key, ChangeEvent], result: ApplyResult) -> None:
        if deletes:
            keys = list(deletes)
            done = self._guarded(table, keys, lambda part: self._delete(table, part), deletes.__getitem__, result)
            result.applied["d"] = result.applied.get("d", 0) + done

    def _upsert_groups(self, table: TableRef, upserts: list[Upsert], result: ApplyResult, moved: bool = False) -> None:
        """One bulk upsert per set of kept columns; ``moved``: each row's kept columns read from its origin's row."""
        groups: dict[frozenset[str], list[Upsert]] = {}
        for upsert in upserts:
            groups.setdefault(upsert.keep, []).append(upsert)
        all_columns = target_columns(table)
        for keep, group in groups.items():
            columns = [column for column in all_columns if column.name not in keep] if keep else all_columns
            columns = written_columns(columns, [upsert.row for upsert in group])
            kept = [column for column in all_columns if column.name in keep] if moved or self.keeps_in_insert else []
            done_ops: dict[str, int] = {}

            def write(part: list[Upsert], columns: list[Column] = columns, kept: list[Column] = kept) -> None:
                rows = [upsert.row for upsert in part]
                if not kept:
                    self._upsert(table, columns, rows, True)
                elif moved:
                    self._upsert_moved(table, columns, kept, rows, [upsert.origin or () for upsert in part])
                else:
                    key = table.source.key
                    self._upsert_moved(table, columns, kept, rows, [tuple(row[k] for k in key) for row in rows], True)

            self._guarded(table, group, write, _event_of_upsert, result, done_ops)
            for op, count in done_ops.items():
                result.applied[op] = result.applied.get(op, 0) + count

    def _upsert_moved_groups(self, table: TableRef, moved: list[Upsert], result: ApplyResult) -> None:
        """Upsert rows whose key changed, their kept (unchanged TOASTed) columns read from the old key's row.

        An old row missing from the target (deleted there, or never copied) leaves those values unknown: the
        change goes to the dead letters (counted in ``result.dead_letters``) rather than a row with NULL in
        them; ``sluice sync resync`` copies the table again."""
        origins = [upsert.origin or () for upsert in moved]
        present = self._current_rows(table, list(dict.fromkeys(origins)), self._key_columns(table))
        found = [upsert for upsert, origin in zip(moved, origins, strict=True) if origin in present]
        for upsert, origin in zip(moved, origins, strict=True):
            if origin not in present:
                columns = ", ".join(sorted(upsert.keep))
                self._dead_letter(
                    table,
                    upsert.event,
                    f"the row of the old key {to_json(list(origin))} of this key change is not in the target, so the "
                    f"values the source left unchanged and did not send ({columns}) are unknown; run `sluice sync "
                    f"resync PATH {table.source.qualified}` (PATH: the project) to copy the table again",
                )
                result.dead_letters += 1
        self._upsert_groups(table, found, result, moved=True)

    def _guarded(
        self,
        table: TableRef,
        items: list[Any],
        run: Callable[[list[Any]], None],
        event_of: Callable[[Any], ChangeEvent],
        result: ApplyResult,
        done_ops: dict[str, int] | None = None,
    ) -> int:
        """Run ``run(items)`` in a savepoint; on a refused row, bisect and dead-letter the rows refused alone."""
        self._savepoint()
        try:
            run(items)
        except Exception as exc:
            reason = self._row_error(exc)
            if reason is None:
                raise
            self._rollback_savepoint()
            if len(items) == 1:
                self._dead_letter(table, event_of(items[0]), reason)
                result.dead_letters += 1
                return 0
            middle = len(items) // 2
            return self._guarded(table, items[:middle], run, event_of, result, done_ops) + self._guarded(
                table, items[middle:], run, event_of, result, done_ops
            )
        self._release()
        if done_ops is not None:
            for op, count in Counter(map(_op_of, map(event_of, items))).items():
                done_ops[op] = done_ops.get(op, 0) + count
        return len(items)

    def _dead_letter(self, table: TableRef, event: ChangeEvent, reason: str) -> None:
        self._record(
            table.source.qualified,
            "dead_letters",
            [(to_json(event.key), event.op, to_json(event), reason[:4000])],
        )

    def _apply_keyless(self, table: TableRef, events: list[ChangeEvent], result: ApplyResult) -> None:
        """Tables without a primary key: ``insert-only`` or ``full-row`` (see docs/cdc/apply.md)."""
        columns = target_columns(table)
        pending: list[ChangeEvent] = []

        def flush() -> None:
            if pending:
                part_events = list(pending)
                done_ops: dict[str, int] = {}
                self._guarded(
                    table,
                    part_events,
                    lambda part: self._upsert(table, columns, [event.after or {} for event in part], False),
                    lambda event: event,
                    result,
                    done_ops,
                )
                for op, count in done_ops.items():
                    result.applied[op] = result.applied.get(op, 0) + count
                pending.clear()

        for event in events:
            if event.op in ("c", "r"):
                pending.append(event)
                continue
            flush()
            if event.op == "t":
                self._truncate(table)
                result.applied["t"] = result.applied.get("t", 0) + 1
            elif table.no_key != "full-row":
                self._dead_letter(table, event, f"table {table.source.qualified} has no primary key (no_key: insert-only)")
                result.dead_letters += 1
            elif event.before is None:
                self._dead_letter(table, event, "no before image: the source must log whole rows (REPLICA IDENTITY FULL)")
                result.dead_letters += 1
            else:
                self._delete_row(table, event.before)
                if event.op == "u" and event.after is not None:
                    pending.append(event)
                else:
                    result.applied["d"] = result.applied.get("d", 0) + 1
        flush()


def written_columns(columns: list[Column], rows: Sequence[dict[str, Any]]) -> list[Column]:
    """``columns`` less those no row of ``rows`` has: a change made before a column was added at the source has
    no value for it, and the target may not have that column yet (an apply started after the source's DDL
    takes the new schema, then replays the changes made before it). A column some rows lack is written NULL
    in those. Checks the first row, then the others only for the columns it lacks."""
    first = rows[0] if rows else {}
    missing = {column.name for column in columns if column.name not in first}
    if missing:
        missing -= {name for row in rows for name in missing if name in row}
    return [column for column in columns if column.name not in missing] if missing else columns
