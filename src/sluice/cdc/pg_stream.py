"""Turns wal2json v2 rows into change events: positions, echo skipping, TOAST, key changes, schema changes.

:class:`StreamDecoder` is fed the rows of successive ``pg_logical_slot_peek_changes`` calls in order
(:meth:`StreamDecoder.feed`). A transaction's position is ``[end LSN of its commit record, change index]``
(index 1 for its first row change); a heartbeat message's is ``[its end LSN, 0]``. Rows at or before the
last position already produced are skipped, so re-reading the slot from its confirmed point (peek does not
consume) yields nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.cdc import pg_types
from sluice.cdc.events import ChangeEvent, Column, Event, Position, SchemaChange, Source, TableSchema
from sluice.cdc.pg_catalog import describe_change
from sluice.cdc.pg_wal2json import W2JColumn, W2JRow, lsn_int, lsn_text

_OPS = {"I": "c", "U": "u", "D": "d"}


class _Table:
    """A known table: its schema and one converter per ``(column, source type)`` as wal2json names them."""

    __slots__ = ("convert", "fixed", "logical", "names", "schema")

    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.names = [c.name for c in schema.columns]
        self.logical = {c.name: c.type for c in schema.columns}
        self.convert = {(c.name, c.source_type): pg_types.converter(c.type) for c in schema.columns}
        self.fixed = {c.name for c in schema.columns if pg_types.fixed_size(c.type)}


class StreamDecoder:
    """Keeps the decoding state across peeks. ``read_table(namespace, name)`` re-reads a table's schema
    from the catalog (``None`` when it is gone); ``new_table(qualified)`` says whether a table capture was
    not told about should be announced (``SchemaChange`` ``create``) and streamed."""

    def __init__(
        self,
        start: Position,
        tables: list[TableSchema],
        side: str,
        origin: str,
        marker_table: str | None,
        read_table: Callable[[str, str], TableSchema | None],
    ) -> None:
        self.last: Position = list(start)
        self.tables = {t.qualified: _Table(t) for t in tables}
        self.side = side
        self.origin = origin
        self.marker_table = marker_table
        self.read_table = read_table
        self.events: list[Event] = []
        self.skipped_echo = 0
        self.invalid_dates = 0
        self.invalid_by_table: dict[str, int] = {}
        """Of ``invalid_dates``, per table (taken with them by :meth:`take`)."""
        self.commit_ts_us = 0
        self.complete: dict[int, int] = {}
        """Commit LSN -> its last change index, for transactions seen whole."""
        self.first_lsn: dict[int, int] = {}
        """Commit LSN -> LSN of the transaction's first record (acknowledging a part of it)."""
        self._commit = 0
        self._index = 0
        self._xid = ""
        self._first = True
        self._echo = False
        self._done_txn = False

    def take(self) -> tuple[list[Event], int, int, dict[str, int]]:
        """The events produced since the last call, with the echo and invalid-date counts (in all, per table);
        resets them."""
        out = (self.events, self.skipped_echo, self.invalid_dates, self.invalid_by_table)
        self.events, self.skipped_echo, self.invalid_dates, self.invalid_by_table = [], 0, 0, {}
        return out

    def feed(self, row_lsn: str, row: W2JRow) -> None:
        """Decode one peeked row (``row_lsn``: the row's ``lsn`` column)."""
        action = row.action
        if action in ("I", "U", "D", "T"):
            self._index += 1
            if self._done_txn:
                return
            position = [self._commit, self._index]
            if self._first:
                self._first = False
                self._echo = self.marker_table is not None and f"{row.schema}.{row.table}" == self.marker_table
            if position <= self.last:
                return
            self.last = position
            if self._echo:
                self.skipped_echo += 1
                return
            self._change(row, position)
        elif action == "B":
            self._commit = lsn_int(row.nextlsn or "0/0")
            self._index = 0
            self._first = True
            self._echo = False
            self._xid = "" if row.xid is None else str(row.xid)
            self._done_txn = self._commit < self.last[0]
            self.first_lsn[self._commit] = lsn_int(row_lsn)
            if row.timestamp:
                self.commit_ts_us = pg_types.timestamp_us(row.timestamp) or 0
        elif action == "C":
            self.complete[self._commit] = self._index
            if [self._commit, self._index] > self.last:
                self.last = [self._commit, self._index]
        elif action == "M" and row.lsn:
            position = [lsn_int(row.lsn), 0]
            if position > self.last:
                self.last = position

    def forget(self, upto_lsn: int) -> None:
        """Drop bookkeeping of transactions acknowledged up to ``upto_lsn``."""
        for lsn in [lsn for lsn in self.first_lsn if lsn <= upto_lsn]:
            self.first_lsn.pop(lsn, None)
            self.complete.pop(lsn, None)

    def _source(self, position: Position) -> Source:
        return Source(
            connector="postgresql",
            name=self.side,
            position=position,
            position_text=lsn_text(position[0]),
            commit_ts_us=self.commit_ts_us,
            txid=self._xid,
            origin=self.origin,
        )

    def _change(self, row: W2JRow, position: Position) -> None:
        qualified = f"{row.schema}.{row.table}"
        table = self.tables.get(qualified)
        if table is None:
            schema = self.read_table(row.schema or "", row.table or "")
            if schema is None:
                return
            table = self.tables[qualified] = _Table(schema)
            self.events.append(SchemaChange(table=qualified, schema=schema, change="create", source=self._source(position)))
        if row.action == "T":
            self.events.append(
                ChangeEvent(op="t", table=qualified, key=[], source=self._source(position), schema_version=table.schema.version)
            )
            return
        columns = row.columns or []
        after = None
        if row.action != "D":
            after, known = self._image(table, columns)
            if not known or self._columns_missing(table, row.action, after):
                table = self._reread(qualified, table, row.action, columns, position)
                after, _ = self._image(table, columns)
        before = self._image(table, row.identity)[0] if row.identity else None
        unchanged: list[str] = []
        if row.action == "U" and after is not None and len(after) < len(table.names):
            unchanged = [name for name in table.names if name not in after]
        key_image = after if after is not None else before or {}
        self.events.append(
            ChangeEvent(
                op=_OPS[row.action],  # type: ignore[arg-type]
                table=qualified,
                key=[key_image.get(k) for k in table.schema.key],
                source=self._source(position),
                before=before,
                after=after,
                schema_version=table.schema.version,
                unchanged=unchanged,
            )
        )

    def _columns_missing(self, table: _Table, action: str, image: dict[str, Any]) -> bool:
        """True when the row lacks columns of the known schema. An update may leave out TOASTed values it did
        not change: a missing column is only a schema change when its type is never TOASTed."""
        if len(image) == len(table.names):
            return False
        if action == "I":
            return True
        return any(name in table.fixed for name in table.names if name not in image)

    def _reread(self, qualified: str, table: _Table, action: str, columns: list[W2JColumn], position: Position) -> _Table:
        """The table's schema as the row shows it (wal2json prints each tuple with the catalog of its time),
        completed from the catalog now where a column has the same name and type there (enum labels,
        nullability); emits the :class:`SchemaChange`."""
        old = table.schema
        current = self.read_table(old.namespace, old.name)
        now = {c.name: c for c in current.columns} if current else {}
        before = {c.name: c for c in old.columns}
        reported = [(col.name, col.type) for col in columns]
        if action == "U":  # values an update did not change may be missing (TOAST): keep those columns in place
            present = {name for name, _ in reported}
            for at, c in enumerate(old.columns):
                if c.name not in present and c.name not in table.fixed:
                    reported.insert(min(at, len(reported)), (c.name, c.source_type))
        new_columns: list[Column] = []
        for name, source_type in reported:
            known = before.get(name)
            if known is not None and known.source_type == source_type:
                new_columns.append(known)
            elif name in now and now[name].source_type == source_type:
                new_columns.append(now[name])
            else:
                logical, length = pg_types.logical_type(source_type)
                new_columns.append(Column(name=name, type=logical, source_type=source_type, length=length))
        names = {c.name for c in new_columns}
        key = current.key if current is not None and set(current.key) <= names else [k for k in old.key if k in names]
        schema = TableSchema(namespace=old.namespace, name=old.name, columns=new_columns, key=key, version=old.version + 1)
        change, renamed = describe_change(old, schema)
        if renamed and not key:
            key = [renamed.get(k, k) for k in old.key]
            schema = TableSchema(namespace=old.namespace, name=old.name, columns=new_columns, key=key, version=old.version + 1)
        fresh = self.tables[qualified] = _Table(schema)
        self.events.append(
            SchemaChange(table=qualified, schema=schema, change=change, source=self._source(position), renamed=renamed)
        )
        return fresh

    def _image(self, table: _Table, columns: list[W2JColumn]) -> tuple[dict[str, Any], bool]:
        """``(column -> canonical value, every column known with its type)``."""
        convert = table.convert
        image: dict[str, Any] = {}
        known = True
        for col in columns:
            fn = convert.get((col.name, col.type))
            if fn is None:
                known = False
                fn = pg_types.converter(pg_types.logical_type(col.type)[0])
            value = col.value
            canonical = fn(value)
            if canonical is None and value is not None:
                self.invalid_dates += 1
                name = table.schema.qualified
                self.invalid_by_table[name] = self.invalid_by_table.get(name, 0) + 1
            image[col.name] = canonical
        return image, known
