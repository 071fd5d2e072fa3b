"""Apply's rows in ``<namespace>.positions``, per partition of a table's topic, and the barrier of table-wide events.

Layout (both targets)::

    positions(sync, side, table_name, bus_partition int default 0, position, position_text, snapshot_last_key,
              snapshot_done, barrier, stopped, updated_at)  primary key (sync, side, table_name, bus_partition)

``position`` is the stored stream position (a JSON list of ints, compared in list order), ``position_text`` the
same as the source database shows it (what ``sluice sync status`` shows from the start of a restarted apply).

A table whose topic has one partition has one row, ``bus_partition = 0``: a positions table created before
partitions existed (primary key ``(sync, side, table_name)``, no ``bus_partition``) is altered to this layout
by ``prepare``, its rows becoming partition 0's. With ``partitions: N`` each partition ``0 .. N-1`` has its
row (its stream position, the key of its last snapshot row), written in the transaction of the rows it
covers; the skip-what-is-covered rule holds per partition, whose messages are in source order.

**The barrier of a table-wide event** (schema change, resync marker, ``TRUNCATE``; published to every
partition, :mod:`sluice.cdc.partitions`). A partition that reaches one stops there and records it in the
``barrier`` column of its row (:meth:`PositionRows.arrive`: the event's :func:`~sluice.cdc.partitions.barrier_id`).
When every partition's row names it, one apply (any thread, process or machine) takes the table's named
lock (PostgreSQL ``pg_try_advisory_lock``, MariaDB ``GET_LOCK``: session locks that survive the commits of
the event's own statements and die with the connection), checks the table's row (``bus_partition = -1``)
does not already record it as done, applies it and records it done there
(:meth:`PositionRows.apply_once`). Every partition then goes on. Nobody passes the barrier before it is
recorded done, and it is recorded only after the event committed, so an event applied twice (a crash between
the two) changed a table no partition had moved on in: the same outcome. A failed attempt is recorded in the
table's row with its error, so the partitions waiting in other processes stop with it.

**A table stopped by an error** (a change the target cannot apply in place, such as a primary-key change):
the ``stopped`` column of the table's row (``bus_partition = -1``) holds the error (:meth:`PositionRows.record_stop`),
so a restart keeps the table stopped (:meth:`PositionRows.stopped`) and its changes wait on the bus instead of
being applied to a target that does not fit them. ``reset`` (``sluice sync resync``, ``--resnapshot``) clears it
in the transaction that empties the table.

Not thread-safe (one connection, like the applier it is part of).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from sluice.cdc.base import BarrierState, SyncError, TableRef
from sluice.cdc.events import Position
from sluice.cdc.plugins import ApplyOptions

log = logging.getLogger("sluice.cdc.apply")

TABLE_ROW = -1
"""``bus_partition`` of a table's own row: the last table-wide event applied, or the one that failed."""


class PositionRows(ABC):
    """The positions-table part of :class:`~sluice.cdc.apply_base.SqlApply`; the dialects give the statements."""

    options: ApplyOptions
    sync: str
    side: str
    now_sql = "now()"

    @abstractmethod
    def _fetch(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders) in the current transaction; its rows (none: empty)."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @abstractmethod
    def _quote(self, name: str) -> str: ...

    @abstractmethod
    def _on_key(self, columns: Sequence[str]) -> str:
        """The dialect's clause that makes an INSERT into positions set ``columns`` (and ``updated_at``) of the
        row already there instead (``ON CONFLICT ... DO UPDATE`` / ``ON DUPLICATE KEY UPDATE``)."""

    @abstractmethod
    def _try_lock(self, name: str) -> bool:
        """Take the session lock ``name`` on the target server without waiting; False when another session holds it."""

    @abstractmethod
    def _unlock(self, name: str) -> None: ...

    # ------------------------------------------------------------------------------------------ rows

    @property
    def _positions(self) -> str:
        return f"{self._quote(self.options.namespace)}.positions"

    def _where(self, name: str) -> tuple[str, list[Any]]:
        return "sync = %s AND side = %s AND table_name = %s", [self.sync, self.side, name]

    def _write_row(self, name: str, partition: int, values: dict[str, Any]) -> None:
        """Insert or update the row of ``(name, partition)`` with ``values`` (column -> value)."""
        columns = ["sync", "side", "table_name", "bus_partition", *values, "updated_at"]
        placeholders = ", ".join(["%s"] * (len(columns) - 1) + [self.now_sql])
        self._fetch(
            f"INSERT INTO {self._positions} ({', '.join(columns)}) VALUES ({placeholders}) {self._on_key(list(values))}",
            [self.sync, self.side, name, partition, *values.values()],
        )

    def stored_position(self, table: TableRef) -> tuple[Position | None, list[Any] | None, bool]:
        """``(least stream position, snapshot key, snapshot done)`` over the table's partitions: the position is the
        least any partition stored (every change up to it is applied), the snapshot key only with one partition's
        row (rows of several partitions resume from the start: snapshot rows are idempotent upserts), done when
        any partition applied a stream change (capture published every snapshot row before streaming)."""
        rows = self._partition_rows(table, "position, snapshot_last_key, snapshot_done")
        positions = [load_position(row[0]) for row in rows]
        known = [position for position in positions if position is not None]
        key = load_key(rows[0][1]) if len(rows) == 1 else None
        return (min(known) if known else None), key, any(bool(row[2]) for row in rows)

    def stored_position_text(self, table: TableRef) -> str:
        rows = [row for row in self._partition_rows(table, "position, position_text") if row[0] is not None]
        if not rows:
            return ""
        text = min(rows, key=lambda row: load_position(row[0]) or [])[1]
        return (text.decode() if isinstance(text, bytes) else str(text)) if text else ""

    def _partition_rows(self, table: TableRef, columns: str) -> list[tuple[Any, ...]]:
        """``columns`` of the rows of ``table``'s topic partitions (not the table's own row), in one transaction."""
        where, args = self._where(table.source.qualified)
        try:
            rows = self._fetch(f"SELECT {columns} FROM {self._positions} WHERE {where} AND bus_partition >= 0", args)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        return rows

    # ------------------------------------------------------------------------------------ stopped table

    def record_stop(self, table: TableRef, error: str) -> None:
        name = table.source.qualified
        try:
            self._write_row(name, TABLE_ROW, {"stopped": error})
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def stopped(self, table: TableRef) -> str:
        where, args = self._where(table.source.qualified)
        try:
            rows = self._fetch(f"SELECT stopped FROM {self._positions} WHERE {where} AND bus_partition = {TABLE_ROW}", args)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        value = rows[0][0] if rows else None
        return (value.decode() if isinstance(value, bytes) else str(value)) if value else ""

    # --------------------------------------------------------------------------------------- barrier

    def arrive(self, table: TableRef, barrier: str, partition: int, partitions: int) -> tuple[BarrierState, str]:
        name = table.source.qualified
        try:
            self._write_row(name, partition, {"barrier": barrier})
            where, args = self._where(name)
            rows = self._fetch(f"SELECT bus_partition, barrier FROM {self._positions} WHERE {where}", args)
            self._commit()
        except BaseException:
            self._rollback()
            raise
        marks = {int(row[0]): row[1] for row in rows}
        record = _table_record(marks.get(TABLE_ROW))
        if record.get("done") == barrier:
            return "done", ""
        if record.get("failed") == barrier:
            return "failed", str(record.get("error", ""))
        if all(marks.get(p) == barrier for p in range(partitions)):
            return "ready", ""
        return "waiting", ""

    def apply_once(self, table: TableRef, barrier: str, run: Callable[[], None]) -> bool | None:
        name = table.source.qualified
        lock = f"sluice_cdc:{self.sync}:{self.side}:{name}"
        if not self._try_lock(lock):
            return None
        try:
            where, args = self._where(name)
            rows = self._fetch(f"SELECT barrier FROM {self._positions} WHERE {where} AND bus_partition = {TABLE_ROW}", args)
            self._commit()
            if rows and _table_record(rows[0][0]).get("done") == barrier:
                return False
            try:
                run()
            except SyncError as exc:
                self._rollback()
                self._record_barrier(name, {"failed": barrier, "error": str(exc)})
                raise
            self._record_barrier(name, {"done": barrier})
            return True
        finally:
            try:
                self._unlock(lock)
            except Exception:  # a connection the failure broke: its session, and the lock, end with it
                log.debug("releasing lock %s failed", lock, exc_info=True)

    def _record_barrier(self, name: str, record: dict[str, str]) -> None:
        try:
            self._write_row(name, TABLE_ROW, {"barrier": json.dumps(record)})
            self._commit()
        except BaseException:
            self._rollback()
            raise


def _table_record(text: str | None) -> dict[str, Any]:
    """The table row's ``barrier``: ``{"done": id}`` or ``{"failed": id, "error": text}``; ``{}`` when unset."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def load_position(text: str | None) -> Position | None:
    """A stored position column (JSON list of ints) as a list, ``None`` when unset."""
    return None if text is None else [int(part) for part in json.loads(text)]


def load_key(text: str | None) -> list[Any] | None:
    """A stored snapshot key (JSON list) as a list, ``None`` when unset."""
    return None if text is None else list(json.loads(text))
