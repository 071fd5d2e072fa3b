"""The PostgreSQL destination's warehouse options: range partitions by date, primary key, indexes, ANALYZE.

These are the options of the ``postgresql`` destination plugin (:class:`PostgresDestinationSpec`, a
:class:`~sluice.project.model.DestinationSpec` with more fields), checked by ``sluice validate`` at the
line of the ``destination:`` key before anything runs. What can be checked without the data is
checked here (a merge key without the partition column, a primary key PostgreSQL would refuse); the
columns themselves are checked against the data's schema when the load starts, before the database
is touched (:mod:`sluice.destinations.warehouse`). docs/destinations.md ("A PostgreSQL warehouse")
describes them for users.

Example (``sluice.yaml``)::

    destination:
      connection: dw
      table: analytics.fact_orders
      mode: merge
      key: [order_id, order_date]
      partition_by: {column: order_date, interval: month}
      primary_key: [order_id, order_date]
      indexes: [[customer_id], {columns: [status, order_date], unique: false}]

Imports nothing but msgspec: the plugin registry reads it when listing plugins.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.destinations.sql import TableName, name_too_long
from sluice.plugins.base import Settings
from sluice.project.model import DestinationSpec

PartitionInterval = Literal["day", "month", "year"]
PARTITION_INTERVALS: tuple[str, ...] = ("day", "month", "year")
DEFAULT_ANALYZE_MIN_ROWS = 100_000

Columns = Annotated[tuple[Annotated[str, Meta(min_length=1)], ...], Meta(min_length=1)]


class PartitionBy(Settings):
    """``partition_by: {column: order_date, interval: month}``: declarative RANGE partitions on a date column.

    The column must be a date or timestamp column in the data (Arrow date32/date64/timestamp; a
    timestamp with a time zone is cut at UTC midnight). One partition per interval, created when the
    first row of that interval arrives. PostgreSQL documentation: "Table Partitioning",
    https://www.postgresql.org/docs/current/ddl-partitioning.html (declarative partitioning).
    """

    column: Annotated[str, Meta(min_length=1, description="The date or timestamp column whose value picks the partition.")]
    interval: Annotated[
        PartitionInterval,
        Meta(
            description="How much time one partition holds: day, month or year (from its first instant, inclusive, "
            "to the next one's)."
        ),
    ] = "month"


class IndexSpec(Settings):
    """One index in the mapping form: ``{columns: [a, b], unique: true}`` (the list form ``[a, b]`` is the same, not unique)."""

    columns: Annotated[Columns, Meta(description="The indexed columns, in order.")]
    unique: Annotated[bool, Meta(description="A unique index: no two rows with the same values in these columns.")] = False


class PostgresDestinationSpec(DestinationSpec):
    """A PostgreSQL destination: the common options plus the warehouse ones (partitions, keys, indexes, ANALYZE)."""

    partition_by: Annotated[
        PartitionBy | None,
        Meta(
            description="Partition the table by RANGE on a date or timestamp column: {column: order_date, interval: "
            "month} (interval: day, month (default) or year). The table is created partitioned and the partitions a load "
            "needs are created as its data arrives; merge needs the column in key. Applies when the table is created "
            "(mode replace recreates a table partitioned otherwise). See docs/destinations.md."
        ),
    ] = None
    primary_key: Annotated[
        tuple[Annotated[str, Meta(min_length=1)], ...],
        Meta(
            description="Primary key columns, created with the table and added to an existing table that has none; on a "
            "partitioned table it must include the partition column."
        ),
    ] = ()
    indexes: Annotated[
        tuple[Columns | IndexSpec, ...],
        Meta(
            description="Indexes, each a list of columns ([customer_id]) or {columns: [a, b], unique: true}; created with the "
            "table and added when missing (CREATE INDEX IF NOT EXISTS, named <table>_<columns>_idx or _key)."
        ),
    ] = ()
    analyze: Annotated[
        bool,
        Meta(description="Run ANALYZE on the table (or the partitions loaded) after a load of at least analyze_min_rows rows."),
    ] = True
    analyze_min_rows: Annotated[
        int, Meta(ge=0, description="Rows a load must write for ANALYZE to run after it (0: after every load).")
    ] = DEFAULT_ANALYZE_MIN_ROWS

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = warehouse_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def layout(self) -> dict[str, Any]:
        """``partition_by``, ``primary_key`` and ``indexes`` as set (defaults left out), e.g. ``{"primary_key": ["id"]}``."""
        built = msgspec.to_builtins(self)
        return {name: built[name] for name in ("partition_by", "primary_key", "indexes") if name in built}

    def index_list(self) -> list[IndexSpec]:
        """Every declared index in the mapping form."""
        return [index if isinstance(index, IndexSpec) else IndexSpec(columns=tuple(index)) for index in self.indexes]

    def declared_columns(self) -> list[tuple[str, str]]:
        """``(option, column)`` for every column the options name: checked against an SQL object's selected
        columns by ``sluice validate``, and against the data's schema when a load starts."""
        named = [("partition_by", self.partition_by.column)] if self.partition_by else []
        named.extend(("primary_key", column) for column in self.primary_key)
        named.extend(("indexes", column) for index in self.index_list() for column in index.columns)
        return named


POSTGRES_NAME_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1: the server cuts longer schema, table and column names short
(https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS)."""


def warehouse_problems(spec: PostgresDestinationSpec, mode: str | None = None, key: tuple[str, ...] | None = None) -> list[str]:
    """What PostgreSQL would refuse in ``spec`` whatever the data (``mode`` and ``key`` override the spec's)."""
    mode = spec.mode if mode is None else mode
    key = spec.key if key is None else key
    name = TableName.parse(spec.table)
    named = [("schema", name.schema)] if name.schema else []
    named += [("table", name.name), *((f"{option} column", column) for option, column in spec.declared_columns())]
    problems = [name_too_long(f"{kind} name '{ident}'", ident, "PostgreSQL", POSTGRES_NAME_BYTES) for kind, ident in named]
    problems = [problem for problem in problems if problem]
    if len(set(spec.primary_key)) != len(spec.primary_key):
        problems.append(f"primary_key {list(spec.primary_key)} names a column twice; name each once")
    for index in spec.index_list():
        if len(set(index.columns)) != len(index.columns):
            problems.append(f"index {list(index.columns)} names a column twice; name each once")
    part = spec.partition_by
    if part is None:
        return problems
    column = part.column
    if mode == "merge" and column not in key:
        problems.append(
            f"mode merge into a table partitioned by '{column}' needs '{column}' in key (key: {', '.join(key) or 'none'}), "
            f"so a row's key decides its partition; add it, e.g. key: [{', '.join([*key, column])}]"
        )
    if spec.primary_key and column not in spec.primary_key:
        problems.append(
            f"primary_key ({', '.join(spec.primary_key)}) must include the partition column '{column}': PostgreSQL "
            "enforces unique constraints on a partitioned table only with the partition column in them; add it"
        )
    for index in spec.index_list():
        if index.unique and column not in index.columns:
            problems.append(
                f"unique index ({', '.join(index.columns)}) must include the partition column '{column}': PostgreSQL "
                "refuses it otherwise; add it or make the index not unique"
            )
    return problems
