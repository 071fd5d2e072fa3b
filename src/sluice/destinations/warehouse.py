"""PostgreSQL warehouse loads: range partitions created as data arrives, primary keys, indexes, ANALYZE.

:class:`WarehouseLoad` carries one load's :class:`~sluice.destinations.warehouse_options.PostgresDestinationSpec`
and runs its DDL on the :class:`~sluice.destinations.postgres.PostgresDestination`'s connection, inside
the load's transaction (so a failed load leaves no partition or index behind):

- ``partition_by: {column: order_date, interval: month}`` creates the table ``PARTITION BY RANGE
  (order_date)`` (PostgreSQL's declarative partitioning: https://www.postgresql.org/docs/current/ddl-partitioning.html).
  Each Arrow batch's partition column is cut to the interval (``pyarrow.compute.floor_temporal``, a
  timestamp with a time zone at UTC midnight) and its distinct starts give the partitions it needs;
  a missing one is created before the batch is copied: ``CREATE TABLE <table>_p2026_11 (LIKE <table>
  ...)`` then ``ALTER TABLE <table> ATTACH PARTITION <table>_p2026_11 FOR VALUES FROM ('2026-11-01') TO
  ('2026-12-01')`` (SHARE UPDATE EXCLUSIVE on the table: its readers are not blocked). COPY cannot
  pause for DDL, so a load is copied in segments: a new COPY starts after each batch that needed new
  partitions. ``merge`` stages its rows first, so the partitions are read from the staging table
  (``SELECT DISTINCT date_trunc(...)``) and its DELETE is limited to their range. Loads adding
  partitions to one table take turns (the destination's transaction-scoped advisory lock, then a
  fresh look at the catalog).
- ``primary_key`` and ``indexes`` are created with the table, and added to an existing table that
  lacks them (``ALTER TABLE ... ADD CONSTRAINT ... PRIMARY KEY``, ``CREATE [UNIQUE] INDEX IF NOT
  EXISTS``). Names are deterministic and at most 63 bytes (:func:`pg_name`): ``<table>_pkey``,
  ``<table>_<columns>_idx`` (``_key`` when unique), ``<table>_p<start>`` for partitions; a longer one
  keeps a prefix and a hash of the whole name.
- ``ANALYZE`` runs after a committed load of at least ``analyze_min_rows`` rows (the partitions loaded,
  or the table), see :meth:`WarehouseLoad.analyze_targets`.

Errors are TerminalError naming the table and the column; docs/destinations.md describes it for users.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pyarrow as pa

from sluice.destinations.partitions import (
    index_name,
    interval_starts,
    is_partition_type,
    midnight,
    next_start,
    parse_range,
    partition_suffix,
    pg_name,
)
from sluice.destinations.sql import TableName, quote
from sluice.destinations.warehouse_options import IndexSpec, PostgresDestinationSpec, warehouse_problems
from sluice.errors import TerminalError, did_you_mean

_SEP = "\x1f"
_OID_SQL = (
    "SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
    "WHERE c.relname = $1 AND n.nspname = coalesce($2, current_schema())"
)


class _Sql(Protocol):
    """What a load needs of the destination: statements on its connection and its DDL lock."""

    def execute(self, sql: str, params: Any = ()) -> None: ...

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...

    def lock_ddl(self, what: str) -> None: ...


class WarehouseLoad:
    """One load's warehouse options, checked against the data's schema when created (TerminalError)."""

    def __init__(self, spec: PostgresDestinationSpec, label: str, schema: pa.Schema, mode: str, key: tuple[str, ...]) -> None:
        self.spec = spec
        self.label = label
        self.touched: set[str] = set()  # partition names this load wrote to
        self.loaded = False
        self._locked = False  # holds the DDL lock on the table's partitions (until the transaction ends)
        self.staged_span: tuple[dt.date, dt.date] | None = None  # merge: first and end day of the staged intervals
        self._ranges: list[tuple[dt.datetime, dt.datetime, str]] | None = None  # existing partitions: from, to, name
        problems = warehouse_problems(spec, mode, key)
        if problems:
            raise TerminalError(f"destination table '{label}': {problems[0]}")
        names = list(schema.names)
        for option, column in spec.declared_columns():
            if column not in names:
                raise TerminalError(
                    f"destination table '{label}': {option} names column '{column}', which is not in the data "
                    f"(columns: {', '.join(names)}).{did_you_mean(column, names)} Fix the destination's {option} or the object"
                )
        part = spec.partition_by
        self.tz = False
        if part is not None:
            kind = schema.field(part.column).type
            if not is_partition_type(kind):
                raise TerminalError(
                    f"destination table '{label}': partition_by column '{part.column}' is {kind}, but range partitions "
                    "by interval need a date or timestamp column; cast it in the object or partition by another column"
                )
            value = kind.value_type if pa.types.is_dictionary(kind) else kind
            self.tz = bool(pa.types.is_timestamp(value) and value.tz is not None)

    @property
    def partitioned(self) -> bool:
        return self.spec.partition_by is not None

    # -- creating the table ---------------------------------------------------------------------------

    def create(self, dest: _Sql, name: TableName, columns_ddl: str) -> None:
        """``CREATE TABLE`` with the primary key and partitioning, then the indexes."""
        parts = [columns_ddl]
        if self.spec.primary_key:
            pk = pg_name(name.name, "pkey")
            parts.append(f"CONSTRAINT {quote(pk)} PRIMARY KEY ({self._cols(self.spec.primary_key)})")
        sql = f"CREATE TABLE {name.sql} ({', '.join(parts)})"
        if self.spec.partition_by is not None:
            sql += f" PARTITION BY RANGE ({quote(self.spec.partition_by.column)})"
            self._ranges = []
        dest.execute(sql)
        for index in self.spec.index_list():
            self._create_index(dest, name, index)

    def check_layout(self, dest: _Sql, name: TableName, mode: str) -> bool:
        """Whether the existing table is partitioned as declared; False for replace (recreate it), else TerminalError."""
        if self.spec.partition_by is None:
            return True
        want = self.spec.partition_by.column
        rows = dest.query(
            "SELECT pt.partstrat, a.attname FROM pg_partitioned_table AS pt JOIN pg_attribute AS a "
            f"ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0] WHERE pt.partrelid = ({_OID_SQL})",
            (name.name, name.schema),
        )
        if rows and rows[0][0] == "r" and rows[0][1] == want:
            return True
        strategy = {"r": "range", "l": "list", "h": "hash"}.get(str(rows[0][0]), "") if rows else ""
        have = f"partitioned by {strategy} on '{rows[0][1]}'" if rows else "not partitioned"
        if mode == "replace":
            return False
        raise TerminalError(
            f"table '{self.label}' exists and is {have}, but the destination declares partition_by column '{want}'; "
            "partitioning is set when a table is created: write once with mode replace to recreate it, or drop the table"
        )

    def complete(self, dest: _Sql, name: TableName) -> None:
        """Add the declared primary key and indexes an existing table lacks (after its columns were added)."""
        if not self.spec.primary_key and not self.spec.indexes:
            return
        oid_rows = dest.query(_OID_SQL, (name.name, name.schema))
        if not oid_rows:
            return
        oid = int(oid_rows[0][0])
        missing = self._missing(dest, oid, name)
        if not missing:
            return
        # Another load may be adding them right now: take turns, then look again.
        dest.lock_ddl(f"table:{name}")
        for index in self._missing(dest, oid, name):
            if index is None:
                pk = pg_name(name.name, "pkey")
                dest.execute(
                    f"ALTER TABLE {name.sql} ADD CONSTRAINT {quote(pk)} PRIMARY KEY ({self._cols(self.spec.primary_key)})"
                )
            else:
                self._create_index(dest, name, index)

    def _missing(self, dest: _Sql, oid: int, name: TableName) -> list[IndexSpec | None]:
        """The declared indexes not on the table, and None first when the primary key is missing."""
        missing: list[IndexSpec | None] = []
        if self.spec.primary_key:
            rows = dest.query(
                "SELECT string_agg(a.attname, chr(31) ORDER BY k.o) FROM pg_constraint AS con, "
                "unnest(con.conkey) WITH ORDINALITY AS k(n, o) JOIN pg_attribute AS a ON a.attnum = k.n "
                "WHERE con.conrelid = $1::oid AND con.contype = 'p' AND a.attrelid = $1::oid GROUP BY con.oid",
                (oid,),
            )
            if not rows:
                missing.append(None)
            elif tuple(str(rows[0][0]).split(_SEP)) != self.spec.primary_key:
                have = ", ".join(str(rows[0][0]).split(_SEP))
                raise TerminalError(
                    f"table '{self.label}' has primary key ({have}) but the destination declares primary_key "
                    f"({', '.join(self.spec.primary_key)}); change primary_key, or drop the table's constraint"
                )
        rows = dest.query(
            "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = $1::oid", (oid,)
        )
        have_names = {str(row[0]) for row in rows}
        missing.extend(index for index in self.spec.index_list() if index_name(name.name, index) not in have_names)
        return missing

    def _create_index(self, dest: _Sql, name: TableName, index: IndexSpec) -> None:
        unique = "UNIQUE " if index.unique else ""
        idx = quote(index_name(name.name, index))
        dest.execute(f"CREATE {unique}INDEX IF NOT EXISTS {idx} ON {name.sql} ({self._cols(index.columns)})")

    @staticmethod
    def _cols(columns: tuple[str, ...]) -> str:
        return ", ".join(quote(column) for column in columns)

    # -- partitions -----------------------------------------------------------------------------------

    def _partition(self, parent: TableName, start: dt.date) -> TableName:
        assert self.spec.partition_by is not None
        return TableName(parent.schema, pg_name(parent.name, partition_suffix(start, self.spec.partition_by.interval)))

    def _bound(self, day: dt.date) -> str:
        return f"'{day.isoformat()} 00:00:00+00'" if self.tz else f"'{day.isoformat()}'"

    def _load_ranges(self, dest: _Sql, parent: TableName) -> list[tuple[dt.datetime, dt.datetime, str]]:
        """The existing partitions of ``parent`` with their bounds (in UTC for timestamps with a time zone)."""
        if self._ranges is None:
            rows = dest.query(
                "SELECT c.relname, pg_get_expr(c.relpartbound, 0) FROM pg_inherits AS i "
                f"JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = ({_OID_SQL})",
                (parent.name, parent.schema),
            )
            self._ranges = [(*bounds, str(name)) for name, bound in rows if (bounds := parse_range(str(bound))) is not None]
        return self._ranges

    def holder(self, start: dt.date) -> str | None:
        """The partition known to hold the whole interval starting on ``start`` (ours or one made by hand), or None."""
        assert self.spec.partition_by is not None
        low, high = midnight(start), midnight(next_start(start, self.spec.partition_by.interval))
        for first, last, name in self._ranges or []:
            if first <= low and high <= last:
                return name
        return None

    def ensure_partitions(self, dest: _Sql, parent: TableName, starts: set[dt.date]) -> None:
        """Create the partitions of ``parent`` for the intervals starting on ``starts`` that no partition holds yet.

        A partition is found by its bounds, so one created by hand under another name (covering the
        interval) is used. The first load to need a new partition takes the destination's DDL lock for
        the table's partitions (held until it commits) and looks at them again; each missing one is
        created as a plain table and attached (``ATTACH PARTITION`` takes SHARE UPDATE EXCLUSIVE on the
        table, so queries reading it and loads writing to existing partitions go on meanwhile;
        ``CREATE TABLE ... PARTITION OF`` would lock them all out until the load commits).
        """
        assert self.spec.partition_by is not None
        interval = self.spec.partition_by.interval
        ranges = self._load_ranges(dest, parent)
        if not self._locked and any(self.holder(start) is None for start in starts):
            dest.lock_ddl(f"partitions:{parent}")
            self._locked = True
            self._ranges = None  # another load may have added some while this one waited
            ranges = self._load_ranges(dest, parent)
        for start in sorted(starts):
            held = self.holder(start)
            if held is None:
                part = self._partition(parent, start)
                end = next_start(start, interval)
                like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION"
                dest.execute(f"CREATE TABLE {part.sql} (LIKE {parent.sql} {like})")
                dest.execute(
                    f"ALTER TABLE {parent.sql} ATTACH PARTITION {part.sql} "
                    f"FOR VALUES FROM ({self._bound(start)}) TO ({self._bound(end)})"
                )
                ranges.append((midnight(start), midnight(end), part.name))
                held = part.name
            self.touched.add(held)

    def batch_starts(self, batch: pa.RecordBatch) -> set[dt.date]:
        """The interval starts of ``batch``'s partition column; TerminalError when it holds nulls."""
        assert self.spec.partition_by is not None
        column = batch.column(batch.schema.get_field_index(self.spec.partition_by.column))
        if column.null_count:
            raise TerminalError(
                f"table '{self.label}' column '{self.spec.partition_by.column}' (partition_by) has {column.null_count} null "
                "values, and a row without a date has no partition; nothing was written. Fill or filter them in the object"
            )
        return interval_starts(column, self.spec.partition_by.interval)

    def insert(
        self, dest: _Sql, parent: TableName, reader: pa.RecordBatchReader, copy: Callable[[pa.RecordBatchReader], int]
    ) -> int:
        """COPY ``reader`` into ``parent`` in segments, creating the partitions each segment needs first."""
        batches = iter(reader)
        pending: tuple[pa.RecordBatch, set[dt.date]] | None = None
        rows = 0
        while True:
            if pending is None:
                first = next(batches, None)
                if first is None:
                    return rows
                pending = (first, self.batch_starts(first))
            head, starts = pending
            self.ensure_partitions(dest, parent, starts)
            pending = None

            def segment(head: pa.RecordBatch = head) -> Iterator[pa.RecordBatch]:
                nonlocal pending
                yield head
                for batch in batches:
                    needed = self.batch_starts(batch)
                    holders = [self.holder(start) for start in needed]
                    if None in holders:
                        pending = (batch, needed)
                        return
                    self.touched.update(name for name in holders if name is not None)
                    yield batch

            rows += copy(pa.RecordBatchReader.from_batches(reader.schema, segment()))
            if pending is None:
                return rows

    def partitions_from_stage(self, dest: _Sql, parent: TableName, stage: TableName) -> None:
        """Create the partitions the staged rows of a merge need (their distinct interval starts, read in SQL).

        The partition column is part of the merge key, whose nulls the merge has refused already.
        """
        assert self.spec.partition_by is not None
        column = quote(self.spec.partition_by.column)
        value = f"{column} AT TIME ZONE 'UTC'" if self.tz else f"{column}::timestamp"
        unit = self.spec.partition_by.interval
        rows = dest.query(f"SELECT DISTINCT date_trunc('{unit}', {value})::date FROM {stage.sql}")
        starts = {row[0] for row in rows}
        self.ensure_partitions(dest, parent, starts)
        if starts:
            self.staged_span = (min(starts), next_start(max(starts), unit))

    def merge_filter(self, alias: str) -> str:
        """A condition on the target's partition column covering the staged rows' intervals, or "".

        Added to the merge's DELETE so PostgreSQL prunes, when planning, the partitions no staged row
        can be in (a join alone would scan every partition of the fact table).
        """
        if self.spec.partition_by is None or self.staged_span is None:
            return ""
        column = f"{alias}.{quote(self.spec.partition_by.column)}"
        low, high = self.staged_span
        return f"{column} >= {self._bound(low)} AND {column} < {self._bound(high)}"

    def analyze_targets(self, parent: TableName, rows: int) -> list[TableName]:
        """What to ANALYZE after a committed load of ``rows`` rows: nothing, the partitions loaded, or the table."""
        if not self.spec.analyze or not self.loaded or rows < self.spec.analyze_min_rows:
            return []
        if self.partitioned:
            return [TableName(parent.schema, part) for part in sorted(self.touched)]
        return [parent]
