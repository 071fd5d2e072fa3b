"""The change event: what capture publishes and apply consumes, version 1 (documented in ``docs/cdc.md``).

One bus message per row change, on one topic per source table (:func:`change_topic`), keyed by the row's
primary key (:func:`key_text`), so every change of one key stays in order on one partition (a table's topic
has one partition, or ``partitions: N`` on Kafka, spread by key as :mod:`sluice.cdc.partitions` says). The value is a
MessagePack-encoded :class:`ChangeEvent`, :class:`SnapshotRows` or :class:`SchemaChange` (:func:`encode` /
:func:`decode`; the field ``kind`` tells them apart: ``change``, ``rows``, ``schema``, ``heartbeat``). The shape
follows Debezium's change event envelope (``op``, ``before``, ``after``, ``source``) with the same operation
letters, so users of that tool read it at sight.

Snapshot reads travel in bulk: one :class:`SnapshotRows` message carries up to a few thousand rows of one
table (``columns`` once, then ``rows`` as lists of canonical values in that order), keyed by the first row's
key, on the table's topic (on the partition of its rows' keys, so the order with the stream's later changes
of each key holds). It means
exactly what one ``op="r"`` :class:`ChangeEvent` per row would (:meth:`SnapshotRows.events`); apply still
accepts those. The idea of a column list sent once per batch of row arrays is the Arrow/columnar batch's,
kept row-major here because apply writes rows (PostgreSQL ``COPY``, MySQL multi-row ``INSERT``).

Values inside ``before``/``after`` use one canonical form per logical type (:mod:`sluice.cdc.types`), the
same in snapshot and in stream and whichever database produced them:

==================  ==========================================================================
logical type         value in the event
==================  ==========================================================================
int8..int64, uint64  ``int`` (uint64 up to 2**64-1, exact)
year                 ``int``
bool                 ``bool``
float32, float64     ``float``
decimal(p,s)         ``str``, exact (``"12345.67"``)
string, enum         ``str``; set: ``str`` of its labels joined by ``,`` as MySQL shows them
json                 ``str`` (JSON text)
bytes                ``bytes``; bit(n): ``int`` (the bits as an unsigned integer)
date                 ``str`` ``YYYY-MM-DD``
time(n)              ``str`` ``[-]HH:MM:SS[.ffffff]`` (MySQL TIME may exceed 24 h or be negative)
datetime(n)          ``str`` ``YYYY-MM-DD HH:MM:SS[.ffffff]``: a wall-clock time, no zone
timestamp(n)         ``int``: microseconds since 1970-01-01 00:00:00 UTC (an instant)
uuid                 ``str``
==================  ==========================================================================

A zero or invalid date (MySQL ``0000-00-00``) becomes ``None`` and is counted by capture.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

EVENT_VERSION = 1
"""Bumped on any incompatible change of :class:`ChangeEvent` or :class:`SchemaChange`."""

Operation = Literal["r", "c", "u", "d", "t"]
"""``r`` snapshot read, ``c`` insert (create), ``u`` update, ``d`` delete, ``t`` truncate (Debezium's letters)."""

OPERATION_NAMES: dict[str, str] = {"r": "snapshot", "c": "insert", "u": "update", "d": "delete", "t": "truncate"}
"""Metric and status label of each operation."""

Position = list[int]
"""A source position, compared lexicographically (a later change has a greater position).

MySQL/MariaDB: ``[binlog file number, end position of the rows event, row index in the event]``; with
``position_mode: gtid``: ``[seq, rows event in the transaction, row index, domain, server]`` (:mod:`sluice.cdc.mysql_gtid`).
PostgreSQL: ``[commit LSN, change index in the transaction]``. A snapshot read carries the position the
snapshot was taken at."""


class Column(msgspec.Struct, frozen=True, omit_defaults=True):
    """One column of a captured table: its name, logical type (:mod:`sluice.cdc.types`) and source type."""

    name: str
    type: str
    """Logical type: ``int64``, ``uint64``, ``decimal(12,2)``, ``datetime(6)``, ``timestamp(3)``, ``string``..."""
    nullable: bool = True
    source_type: str = ""
    """The column's type as the source declares it (``bigint(20) unsigned``, ``character varying(64)``)."""
    labels: list[str] | None = None
    """ENUM/SET labels, in declaration order."""
    length: int | None = None
    """Characters of a string (``varchar(64)``), bytes of a binary, when declared."""
    default: str | int | float | bool | None = None
    """The column's constant default as a canonical value of its logical type (``5``, ``"abc"``, ``"12.50"``);
    None when it has none, its default is NULL or an expression (``CURRENT_TIMESTAMP``, ``nextval(...)``), or
    its type has no literal form here (json, bytes, timestamp). Apply adds a column with it, so the rows
    already in the target get the value the source's rows got without any row change being logged."""


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DEFAULT_TEXT = frozenset({"decimal", "string", "enum", "set", "date", "time", "datetime", "uuid"})


def constant_default(logical: str, literal: str | None) -> str | int | float | bool | None:
    """The canonical value (:class:`Column` ``default``) of a default ``literal`` as a catalog shows it.

    ``literal`` is an unquoted number (``5``, ``-1.5``), a quoted string (``'abc'``, quotes doubled inside;
    PostgreSQL's ``'abc'::character varying`` cast is ignored), ``true``/``false``, or anything else (an
    expression, ``NULL``, ``b'101'``), which gives None, as do types without a literal form here."""
    if literal is None:
        return None
    text = literal.strip()
    quoted = re.fullmatch(r"'((?:[^']|'')*)'(?:::[a-z0-9_ \"().,\[\]]+)?", text, flags=re.IGNORECASE)
    if quoted is not None:
        text = quoted.group(1).replace("''", "'")
    elif not _NUMBER.match(text) and text.lower() not in ("true", "false"):
        return None
    kind = logical.split("(", 1)[0].strip().lower()
    try:
        if kind in ("bool", "boolean"):
            return {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}.get(text.lower())
        if kind in ("year", "bit") or re.fullmatch(r"u?int(8|16|32|64)", kind):
            return int(text)
        if kind in ("float32", "float64"):
            return float(text)
    except ValueError:
        return None
    return text if kind in _DEFAULT_TEXT else None


class TableSchema(msgspec.Struct, frozen=True, omit_defaults=True):
    """A captured table: ``namespace`` (MySQL database or PostgreSQL schema), name, columns and key."""

    namespace: str
    name: str
    columns: list[Column]
    key: list[str]
    """Primary-key columns in key order; empty for a table without a primary key."""
    version: int = 1
    """Increases by one with each schema change capture sees for the table."""

    @property
    def qualified(self) -> str:
        """``namespace.name``."""
        return f"{self.namespace}.{self.name}"

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None


class Source(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where and when a change happened at the source."""

    connector: str
    """``mysql`` or ``postgresql``."""
    name: str
    """The sync side the change was captured from (its connection name)."""
    position: Position
    position_text: str
    """The position as the database shows it: ``mysql-bin.000003:4567`` or ``0/16B3748``."""
    commit_ts_us: int
    """Commit time, microseconds since the epoch, UTC (MySQL binlogs have whole seconds)."""
    txid: str = ""
    """Transaction id: a MariaDB GTID ``domain-server-seq``, a MySQL GTID, or a PostgreSQL xid."""
    origin: str = ""
    """Which capture published it: ``<sync>/<side>``."""
    snapshot: bool = False
    """True for rows read by a snapshot (``op == 'r'``)."""


class ChangeEvent(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="kind", tag="change"):
    """One row change. ``before`` is ``None`` for inserts and snapshot reads, ``after`` for deletes.

    ``key`` holds the primary-key values (the before image's for a delete, the after image's otherwise;
    an update that changes the key has the old key in ``before``). ``unchanged`` lists columns absent from
    ``after`` because the source did not send them (PostgreSQL TOASTed values an update left alone):
    apply keeps the target's value for those.
    """

    op: Operation
    table: str
    """The source table, ``namespace.name``."""
    key: list[Any]
    source: Source
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    schema_version: int = 1
    unchanged: list[str] = msgspec.field(default_factory=list)
    v: int = EVENT_VERSION
    base: str = ""
    """Both-ways syncs: the version of the row this change replaced (:func:`version_id` of the change that
    wrote it, on either side), or ``""`` when the capture does not know it (:mod:`sluice.cdc.conflicts`)."""


def version_id(event: ChangeEvent) -> str:
    """The identity of the row version ``event`` wrote: ``<side>:<position>``, unique across a sync's sides."""
    return f"{event.source.name}:{','.join(map(str, event.source.position))}"


RESTART = "restart"
"""The :attr:`SchemaChange.change` of a table's schema as read when capture started, published ahead of its stream by
a capture whose stream carries no DDL (:attr:`sluice.cdc.base.Capture.ddl_in_stream`, PostgreSQL)."""


class SchemaChange(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="kind", tag="schema"):
    """A table's schema as of ``source.position``: published when capture first sees the table and after each DDL.

    ``change`` says what happened (``create``, ``add_column``, ``alter_column``, ``rename_column``,
    ``drop_column``, ``rename_table``, ``drop_table``, ``other``; ``resync``: not a DDL but the marker capture
    publishes before a resync's snapshot rows, so apply in another process empties the table first, see
    :mod:`sluice.cdc.apply_loop`; ``restart``: :data:`RESTART`, the schema read at start, which apply compares
    with the target, a column gone and one new at the same place with the same type taken for a rename made
    while the sync was stopped); ``ddl`` is the statement when known.
    ``renamed`` maps old column names to new ones for a rename.
    """

    table: str
    schema: TableSchema
    change: str
    source: Source
    ddl: str = ""
    renamed: dict[str, str] = msgspec.field(default_factory=dict)
    v: int = EVENT_VERSION


class Heartbeat(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="kind", tag="heartbeat"):
    """Capture is alive and has read the source up to ``source.position`` (sent while the source is idle)."""

    source: Source
    v: int = EVENT_VERSION


class SnapshotRows(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="kind", tag="rows"):
    """Rows of one table read by a snapshot: the bulk form of ``op="r"`` change events.

    ``rows[i][j]`` is the canonical value (module docstring) of column ``columns[j]`` in the ``i``-th row, rows
    in key order. ``source`` is the snapshot's (``snapshot=True``, the position read before the snapshot began),
    the same for every row. ``key`` names the primary-key columns (each one of ``columns``), empty for a table
    without key.
    """

    table: str
    """The source table, ``namespace.name``."""
    source: Source
    columns: list[str]
    rows: list[list[Any]]
    key: list[str] = msgspec.field(default_factory=list)
    schema_version: int = 1
    v: int = EVENT_VERSION

    def key_of(self, row: list[Any]) -> list[Any]:
        """The key values of one of :attr:`rows` (``[]`` without key)."""
        return [row[self.columns.index(name)] for name in self.key]

    def last_key(self) -> list[Any] | None:
        """The key of the last row (where a resumed snapshot starts after); ``None`` without rows or key."""
        return self.key_of(self.rows[-1]) if self.rows and self.key else None

    def events(self) -> list[ChangeEvent]:
        """The same rows as one ``op="r"`` :class:`ChangeEvent` each (applies that have no bulk path)."""
        at = [self.columns.index(name) for name in self.key]
        columns = self.columns
        return [
            ChangeEvent(
                op="r",
                table=self.table,
                key=[row[i] for i in at],
                source=self.source,
                after=dict(zip(columns, row, strict=True)),
                schema_version=self.schema_version,
            )
            for row in self.rows
        ]


Event = ChangeEvent | SnapshotRows | SchemaChange | Heartbeat

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)


def encode(event: Event) -> bytes:
    """The bus value of ``event`` (MessagePack)."""
    return _encoder.encode(event)


def decode(value: bytes) -> Event:
    """The event a bus value holds. Raises :class:`msgspec.DecodeError` / :class:`msgspec.ValidationError`."""
    return _decoder.decode(value)


TOPIC_PREFIX = "sluice.cdc."


def change_topic(sync: str, side: str, table: str) -> str:
    """The topic of one captured table: ``sluice.cdc.<sync>.<side>.<namespace.table>``."""
    return f"{TOPIC_PREFIX}{sync}.{side}.{table}"


def heartbeat_topic(sync: str, side: str) -> str:
    """Capture's heartbeats and checkpoints of one side: ``sluice.cdc.<sync>.<side>._heartbeat``."""
    return f"{TOPIC_PREFIX}{sync}.{side}._heartbeat"


def apply_group(sync: str, side: str) -> str:
    """The consumer group that applies one side's changes: ``sluice-sync.<sync>.<side>``."""
    return f"sluice-sync.{sync}.{side}"


def key_text(values: list[Any]) -> str:
    """The bus key of a row: its key values as compact JSON (``[42]``, ``["a",1]``); bytes as hex."""
    return msgspec.json.encode([v.hex() if isinstance(v, bytes | bytearray) else v for v in values]).decode()
