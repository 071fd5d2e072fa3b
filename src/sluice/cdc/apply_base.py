"""The apply flow both SQL targets share (:class:`SqlApply`); the dialects write the SQL.

One :meth:`SqlApply.apply_batch` is one target transaction:

1. write the table's row of ``<namespace>.positions`` first (the echo marker a both-ways capture on this
   database skips transactions by) and read the stored position from it (the row of the batch's partition of
   the table's topic, :mod:`sluice.cdc.apply_positions`);
2. skip stream changes at or before that position; snapshot reads (``r``) always apply (idempotent upserts);
3. with a resolver (both-ways), read the target rows of the batch's keys in one query, hand the changes
   whose ``before`` image (or, for an insert, the existing row) differs to the resolver, drop the losers,
   record every conflict in ``<namespace>.conflicts``;
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

import msgspec

from sluice.cdc.apply_common import (
    Key,
    Segment,
    Upsert,
    cannot_alter,
    default_clause,
    net_effect,
    no_key_error,
    same_value,
    target_columns,
    widens,
)
from sluice.cdc.apply_positions import PositionRows
from sluice.cdc.base import Apply, ApplyResult, Conflict, Resolver, SyncError, TableRef
from sluice.cdc.events import ChangeEvent, Column, Position, SchemaChange, SnapshotRows
from sluice.cdc.plugins import ApplyOptions

_json_encoder = msgspec.json.Encoder(enc_hook=str)
_event_of_upsert = attrgetter("event")
_op_of = attrgetter("op")


def to_json(value: Any) -> str:
    """JSON text of an event or a row (bytes as base64, Decimal/datetime/timedelta as text)."""
    return _json_encoder.encode(value).decode()


def old_key(event: ChangeEvent, key_columns: Sequence[str]) -> Key:
    """The key a change found in the target: the ``before`` image's for an update, else ``event.key``."""
    before = event.before
    if event.op == "u" and before is not None and key_columns and all(column in before for column in key_columns):
        return tuple(before[column] for column in key_columns)
    return tuple(event.key)


class SqlApply(PositionRows, Apply):
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
        self, name: str, partition: int, position: Position | None, snapshot_key: list[Any] | None, streaming: bool
    ) -> None:
        """Store the new position / snapshot key (``None``: unchanged) and commit."""
        self._executemany(
            f"UPDATE {self._quote(self.options.namespace)}.positions SET position = COALESCE(%s, position),"
            " snapshot_last_key = COALESCE(%s, snapshot_last_key), snapshot_done = snapshot_done OR %s,"
            f" updated_at = {self.now_sql} WHERE sync = %s AND side = %s AND table_name = %s AND bus_partition = %s",
            [
                (
                    None if position is None else to_json(position),
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

    @abstractmethod
    def _row_error(self, exc: BaseException) -> str | None:
        """The reason when ``exc`` is the target refusing a row (constraint, range, encoding), else ``None``."""

    @abstractmethod
    def _truncate(self, table: TableRef) -> None: ...

    @abstractmethod
    def _upsert(self, table: TableRef, columns: list[Column], rows: list[dict[str, Any]], merge: bool) -> None:
        """Write ``rows`` (only ``columns``); ``merge``: insert or update by key, else plain insert."""

    @abstractmethod
    def _delete(self, table: TableRef, keys: list[Key]) -> None: ...

    @abstractmethod
    def _delete_row(self, table: TableRef, row: dict[str, Any]) -> int:
        """Delete one row equal to ``row`` on every target column (tables without key, ``full-row``)."""

    @abstractmethod
    def _current_rows(self, table: TableRef, keys: list[Key]) -> dict[Key, dict[str, Any]]:
        """The target rows of ``keys`` (column -> driver value), in one query."""

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
    def _target_columns(self, table: TableRef) -> dict[str, str]:
        """Columns of the target table now, from its catalog: name -> type text (empty: no such table)."""

    @abstractmethod
    def _alter(self, table: TableRef, action: str, column: Column, other: str = "") -> None:
        """``add``, ``drop``, ``keep`` (make nullable), ``type`` (widen) a column, or ``rename`` it to ``other``."""

    @abstractmethod
    def _create_table(self, table: TableRef) -> None:
        """Create the target table when missing (columns minus drop, mapped types, primary key)."""

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
            stored = self._begin(name, partition)
            todo: list[ChangeEvent] = []
            position: Position | None = None
            snapshot_key: list[Any] | None = None
            for event in events:
                if event.op == "r":
                    snapshot_key = event.key
                elif stored is not None and event.source.position <= stored:
                    result.skipped += 1
                    continue
                else:
                    position = event.source.position
                todo.append(event)
            if resolver is not None and todo and table.source.key:
                todo = self._resolve(table, todo, resolver, result)
            if table.source.key:
                for segment in net_effect(todo, table.source.key):
                    self._apply_segment(table, segment, result)
            else:
                self._apply_keyless(table, todo, result)
            self._finish(name, partition, position, snapshot_key, position is not None)
        except BaseException:
            self._rollback()
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
        except BaseException:
            self._rollback()
            raise
        return result

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
        if segment.truncate:
            self._truncate(table)
            result.applied["t"] = result.applied.get("t", 0) + 1
        if segment.deletes:
            keys = list(segment.deletes)
            events = segment.deletes
            done = self._guarded(table, keys, lambda part: self._delete(table, part), events.__getitem__, result)
            result.applied["d"] = result.applied.get("d", 0) + done
        groups: dict[frozenset[str], list[Upsert]] = {}
        for upsert in segment.upserts.values():
            groups.setdefault(upsert.keep, []).append(upsert)
        all_columns = target_columns(table)
        for keep, upserts in groups.items():
            columns = [column for column in all_columns if column.name not in keep] if keep else all_columns
            columns = written_columns(columns, [upsert.row for upsert in upserts])
            done_ops: dict[str, int] = {}

            def write(part: list[Upsert], columns: list[Column] = columns) -> None:
                self._upsert(table, columns, [upsert.row for upsert in part], True)

            self._guarded(table, upserts, write, _event_of_upsert, result, done_ops)
            for op, count in done_ops.items():
                result.applied[op] = result.applied.get(op, 0) + count

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

    def _resolve(self, table: TableRef, events: list[ChangeEvent], resolver: Resolver, result: ApplyResult) -> list[ChangeEvent]:
        """Conflicts of the batch decided by ``resolver``; the events left to apply."""
        key_columns = table.source.key
        first: dict[Key, ChangeEvent] = {}
        for event in events:
            if event.op in ("c", "u", "d"):
                first.setdefault(old_key(event, key_columns), event)
        if not first:
            return events
        current = self._current_rows(table, list(first))
        types = {column.name: column.type for column in target_columns(table)}
        masked = set(table.mask)
        conflicts: list[Conflict] = []
        for key, event in first.items():
            row = current.get(key)
            image = event.after if event.op == "c" else event.before
            if event.op == "c":
                differs = row is not None and not self._matches(image or {}, row, types, masked)
            else:
                differs = row is None or not self._matches(image or {}, row, types, masked)
            if differs:
                conflicts.append(Conflict(event, row))
        if not conflicts:
            return events
        decisions = resolver(conflicts)
        losers: set[Key] = set()
        records = []
        for conflict, applied in zip(conflicts, decisions, strict=True):
            if not applied:
                losers.add(old_key(conflict.event, key_columns))
                losers.add(tuple(conflict.event.key))
            records.append((to_json(conflict.event.key), to_json(conflict.event), to_json(conflict.current), bool(applied)))
        self._record(table.source.qualified, "conflicts", records)
        result.conflicts += len(conflicts)
        return [
            event
            for event in events
            if event.op in ("r", "t") or (tuple(event.key) not in losers and old_key(event, key_columns) not in losers)
        ]

    @staticmethod
    def _matches(image: dict[str, Any], row: dict[str, Any], types: dict[str, str], masked: set[str]) -> bool:
        for column, value in image.items():
            if column in types and column in row and not same_value(types[column], value, row[column], column in masked):
                return False
        return True

    # ------------------------------------------------------------------------------------- schema

    def apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        """Rename, add, widen, drop (or keep) columns so the target matches ``change.schema``.

        Compared with the target table's columns as its catalog has them now (not with ``table.source``,
        the source schema read when the sync started, which already holds a DDL made while the sync was
        stopped): a target column missing from ``change.schema`` is dropped (``drop_columns: keep``: made
        nullable), a column whose target type differs from the one ``change.schema`` maps to is altered.
        Idempotent: a column already added, renamed or dropped is left alone. Raises :class:`SyncError`
        (``table`` set: the source table) for a key change, a type change that does not widen (:func:`widens`)
        and any error of the target database."""
        name = table.source.qualified
        try:
            self._apply_schema(table, change)
        except SyncError:
            self._rollback()
            raise
        except Exception as exc:
            self._rollback()
            raise SyncError(
                f"table {name}: the target refused schema change {change.change!r} ({change.ddl or 'no DDL text'}): "
                f"{str(exc).strip()}; change the target by hand, or run 'sluice sync resync PATH {name}'",
                table=name,
            ) from exc

    def _apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        present = self._target_columns(table)
        if change.change == "create" or not present:
            self._create_table(_with_schema(table, change))
            self._commit()
            return
        if change.change in ("drop_table", "rename_table"):
            self._commit()
            return
        if list(change.schema.key) != list(table.source.key):
            raise cannot_alter(
                table,
                ",".join(change.schema.key) or "(key)",
                "primary key " + ",".join(table.source.key),
                "primary key " + ",".join(change.schema.key),
            )
        dropped = set(table.drop)
        old = {column.name: column for column in table.source.columns}
        new = {column.name: column for column in change.schema.columns}
        for before, after in change.renamed.items():
            if before in present and after not in present and before not in dropped and after in new:
                self._alter(table, "rename", msgspec.structs.replace(new[after], name=before), after)
                present[after] = present.pop(before)
            if before in old:
                old[after] = msgspec.structs.replace(old.pop(before), name=after)
        for column in change.schema.columns:
            if column.name in dropped:
                continue
            if column.name not in present:
                self._alter(table, "add", column)
                continue
            if self._same_type(present[column.name], self._type_of(table, column)):
                continue
            previous = old.get(column.name)
            # The source type before the change when this run knew it; a change made while the sync was
            # stopped is already in table.source, so the target's type is the only "before" left.
            if previous is not None and previous.type != column.type and not widens(previous, column):
                raise cannot_alter(table, column.name, previous.type, column.type)
            self._alter(table, "type", column)
        for column_name, target_type in present.items():
            if column_name not in new and column_name not in dropped:
                column = old.get(column_name) or Column(name=column_name, type="string", source_type=target_type)
                self._alter(table, "drop" if table.drop_columns == "drop" else "keep", column)
        self._commit()

    def _default(self, table: TableRef, column: Column, dialect: str) -> str:
        """`` DEFAULT <literal>[ NOT NULL]`` for adding ``column`` (:func:`default_clause`; none for a masked column)."""
        return default_clause(column, dialect, masked=column.name in table.mask)

    def _same_type(self, target_type: str, wanted: str) -> bool:
        """Whether the catalog's type text ``target_type`` is the type ``wanted`` (as :meth:`_type_of` writes it)."""
        return target_type.lower() == wanted.lower()

    @abstractmethod
    def _type_of(self, table: TableRef, column: Column) -> str:
        """The target type of ``column`` in ``table`` (masked columns included)."""


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


def _with_schema(table: TableRef, change: SchemaChange) -> TableRef:
    return TableRef(
        change.schema,
        table.target_namespace,
        table.target_name,
        table.drop,
        table.mask,
        table.no_key,
        table.drop_columns,
    )
