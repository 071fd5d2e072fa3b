"""The two seams of change-data capture: :class:`Capture` reads a source database, :class:`Apply` writes a target.

The sync runtime (:mod:`sluice.cdc.runtime`) joins them through the bus: capture's :class:`ChangeBatch`es
are published one message per row change (snapshot rows: a few thousand per message, :mod:`sluice.cdc.events`),
apply consumes them per table and calls :meth:`Apply.apply_batch` (snapshot rows: :meth:`Apply.apply_rows`).
Both are plugins (kinds ``capture`` and ``apply``, chosen by the URL scheme of the sync's connection; see
:mod:`sluice.cdc.plugins`).

Guarantees the implementations give (checked by ``tests/cdc/contract_*.py``):

* capture yields changes in source commit order, each with a :class:`~sluice.cdc.events.Position` greater
  than the one before, and can resume from any position it yielded (:meth:`Capture.stream`);
* a snapshot reads a table in key order in chunks of ``chunk_rows`` rows (:class:`SnapshotChunk`) and can
  resume after the last key of any chunk; the stream position it returns was read before the first chunk,
  so snapshot rows followed by the stream from that position converge to the source (full row images, applied in order);
* apply writes a batch and the table's position in one target transaction, skips stream changes at or
  before the stored position (so a batch delivered twice changes nothing), and puts a row it cannot write
  into the dead letters instead of failing the batch. With ``partitions: N`` (Kafka) the position is stored
  per partition of the table's topic (``partition=``), and the partitions meet at a barrier before a
  table-wide event (:meth:`Apply.arrive`, :meth:`Apply.apply_once`; :mod:`sluice.cdc.partitions`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.cdc.events import ChangeEvent, Event, Position, SchemaChange, SnapshotRows, Source, TableSchema
from sluice.errors import SluiceError


class SyncError(SluiceError):
    """A sync cannot go on. ``table`` is set when only that table must stop (the others go on)."""

    def __init__(self, message: str, table: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.table = table
        self.transient = transient


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, else its class name (a database error's message may run on)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class SourceNotReady(SyncError):
    """The source server is not set up for capture (binlog format, wal_level, privileges...).

    The message names the server setting to change and how."""


class PositionLost(SyncError):
    """The position to resume from is no longer in the source's log (binlog purged, slot dropped).

    The message says to run ``sluice sync PATH --resnapshot``."""


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table as a sync sees it: where it is read and where it is written, and what is left out."""

    source: TableSchema
    target_namespace: str
    target_name: str
    drop: tuple[str, ...] = ()
    """Columns not copied to the target."""
    mask: tuple[str, ...] = ()
    """Columns whose values are replaced by a hash (hex SHA-256 of the value's text) in the target."""
    no_key: str = "refuse"
    """Policy for a table without primary key (``SyncSettings.no_key``): refuse, insert-only or full-row."""
    drop_columns: str = "drop"
    """A column dropped at the source: ``drop`` it in the target too, or ``keep`` it (``SyncSettings.drop_columns``)."""

    @property
    def target_qualified(self) -> str:
        return f"{self.target_namespace}.{self.target_name}"


@dataclass(slots=True)
class ChangeBatch:
    """What capture read since the previous batch: events in source order and the position after them.

    ``position`` is where :meth:`Capture.stream` resumes to read what follows; ``position_text`` shows it.
    ``skipped_echo`` counts row changes left out because the sync itself wrote them (both-ways syncs);
    ``invalid_dates`` counts zero or invalid dates turned into NULL, ``invalid_dates_by_table`` the same per
    source table (``namespace.name``); the runtime counts them per table in the sync's status and metrics (a
    capture that gives only the total has it counted against the batch's table when its changes have one).
    """

    events: list[Event]
    position: Position
    position_text: str
    commit_ts_us: int = 0
    skipped_echo: int = 0
    invalid_dates: int = 0
    invalid_dates_by_table: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class SnapshotChunk:
    """Rows of one table read by a snapshot, in key order; ``last_key`` resumes the next chunk.

    The rows come in one of two forms: the bulk one, ``columns`` (names) and ``rows`` (one list of canonical
    values per row, in ``columns`` order, :mod:`sluice.cdc.events`) with ``source`` (the chunk's, ``snapshot=True``),
    which both SQL captures give; or ``events``, one ``op="r"`` :class:`ChangeEvent` per row. The runtime
    publishes either as :class:`~sluice.cdc.events.SnapshotRows` messages."""

    table: str
    events: list[ChangeEvent]
    last_key: list[Any] | None
    rows_read: int
    rows_total_estimate: int | None = None
    done: bool = False
    invalid_dates: int = 0
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    source: Source | None = None

    @property
    def count(self) -> int:
        """Rows in the chunk, whichever form they have."""
        return len(self.rows) if self.columns else len(self.events)

    def as_events(self, key: Sequence[str]) -> list[ChangeEvent]:
        """The rows as ``op="r"`` change events (``key``: the table's key columns), whichever form they have."""
        if not self.columns or self.source is None:
            return self.events
        return SnapshotRows(self.table, self.source, self.columns, self.rows, list(key)).events()


class Capture(ABC):
    """Reads one source database: its tables, a snapshot of them, then its change stream.

    Built by the plugin's target from ``(url, options, sync_name, side, marker_table)``: ``marker_table``
    (``namespace.name``) is the table apply writes its positions to in this same database when the sync runs
    both ways; a source transaction whose first change is to it was written by the sync and is skipped
    whole (no echo).
    """

    ddl_in_stream: bool = True
    """Whether :meth:`stream` reports each DDL where it happened (MariaDB/MySQL: the binlog's statements). When not
    (PostgreSQL: logical decoding carries none), a change made while capture was stopped shows only in the schema
    read at start: the runtime publishes that schema first (a ``restart`` :class:`~sluice.cdc.events.SchemaChange`
    per table) and apply reconciles the target with it."""

    @abstractmethod
    def check(self) -> list[str]:
        """Problems that stop capture before it starts, each naming the server setting to change. Empty: ready."""

    @abstractmethod
    def list_tables(self) -> list[TableSchema]:
        """Every user table capture can read (not system tables, not Sluice's own)."""

    @abstractmethod
    def current_position(self) -> tuple[Position, str]:
        """The source's position now (read without a global lock), and its text: where a stream may start so that it
        misses nothing a snapshot started afterwards does not see (a position too early is safe, one too late is not)."""

    def end_position(self) -> tuple[Position, str]:
        """A position, and its text, that :meth:`stream` reaches only once it yielded every change committed before
        this call, without waiting for any later write to the source (``--once`` and ``snapshot: initial_only`` read
        up to it, a hosted sync's pass waits for it). A position too late is safe here, one too early is not.

        Default: :meth:`current_position`, right for a source whose position now is past every committed change
        (MariaDB/MySQL: the binlog is written before a commit returns). Raises :class:`SyncError` like it."""
        return self.current_position()

    @abstractmethod
    def snapshot(self, table: TableSchema, after_key: list[Any] | None, chunk_rows: int) -> Iterator[SnapshotChunk]:
        """Read ``table`` in key order from after ``after_key`` (``None``: from the start), ``chunk_rows`` at a time.

        A table without a key is read in one pass (no resume inside it)."""

    @abstractmethod
    def stream(self, start: Position, tables: Sequence[TableSchema], max_wait_s: float) -> Iterator[ChangeBatch]:
        """Changes after ``start`` for ``tables`` (and new tables, as :class:`SchemaChange` events), forever.

        Yields a batch at least every ``max_wait_s`` seconds (possibly empty, with the position read up to:
        that is the heartbeat). Raises :class:`PositionLost` when ``start`` is no longer in the log."""

    def prepare(self, tables: Sequence[TableSchema]) -> None:  # noqa: B027 - optional
        """Set the source up for streaming ``tables`` (PostgreSQL: slot, publication, ``REPLICA IDENTITY FULL``).

        The runtime calls it before it reads the first position of a run (:meth:`current_position`), so every
        change after that position is logged the way the stream needs it. Idempotent; raises
        :class:`SourceNotReady` when the server refuses."""

    def acknowledge(self, position: Position) -> None:  # noqa: B027 - optional
        """Everything up to ``position`` is safely on the bus: the source may free its log (PostgreSQL slot)."""

    def drop(self) -> None:  # noqa: B027 - optional
        """Remove what capture created on the source (replication slot, publication)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


@dataclass(slots=True)
class ApplyResult:
    """What one :meth:`Apply.apply_batch` did. Counts are rows."""

    applied: dict[str, int] = field(default_factory=dict)
    """Rows written by operation letter (``c``, ``u``, ``d``, ``r``, ``t``)."""
    skipped: int = 0
    """Stream changes at or before the stored position (already applied)."""
    dead_letters: int = 0
    conflicts: int = 0


@dataclass(frozen=True, slots=True)
class Conflict:
    """A change whose ``before`` image does not match the target row (both-ways syncs): ``current`` is the target's row."""

    event: ChangeEvent
    current: dict[str, Any] | None
    matches: Callable[[dict[str, Any] | None], bool] | None = None
    """Whether a row image in canonical form (None: no row) is ``current`` (values compared by type, as the
    ``before`` image is): newer-wins finds the commit time of the local version that wrote ``current`` with it."""


Resolver = Callable[[list[Conflict]], list[bool]]
"""Given the conflicts of a batch, which of their events to apply (True) or to drop (False), in order."""

BarrierState = Literal["waiting", "ready", "done", "failed"]
"""Where one table-wide event stands for the partitions of a table (:meth:`Apply.arrive`)."""


class Apply(ABC):
    """Writes changes into one target database. Built from ``(url, options, sync_name, side)``."""

    @abstractmethod
    def prepare(self, tables: Sequence[TableRef]) -> None:
        """Create Sluice's positions and dead-letter tables and any missing target table. Idempotent."""

    @abstractmethod
    def stored_position(self, table: TableRef) -> tuple[Position | None, list[Any] | None, bool]:
        """``(stream position, snapshot last key, snapshot done)`` stored in the target for ``table``."""

    def stored_position_text(self, table: TableRef) -> str:
        """The stored stream position of ``table`` as the source database shows it (``position_text`` of the change
        that stored it; with several partitions, the least one's), "" when none is stored. ``sluice sync status``
        shows it from the start of a restarted apply, before a new change arrives. Plugins that do not store it
        return "" (this default): their status shows the position from the first change applied."""
        return ""

    @abstractmethod
    def apply_batch(
        self, table: TableRef, events: Sequence[ChangeEvent], resolver: Resolver | None = None, *, partition: int = 0
    ) -> ApplyResult:
        """Apply ``events`` (in order, one table) and store the last stream change's position, in one transaction.
        A snapshot read (``op="r"``) stores its key as the snapshot's progress, never its position: the chunks of
        a resumed snapshot carry the (newer) position read when it resumed, while the stream replays the changes
        made since the first chunks' position, which must not be skipped.

        Several changes of one key in a batch reduce to their net effect. Stream changes at or before the
        stored position are skipped. With ``resolver`` (both-ways), an update or delete whose ``before``
        differs from the target row, or an insert whose key exists, is a :class:`Conflict` the resolver decides.
        Rows the target refuses go to the dead letters with the reason. ``partition``: the partition of the
        table's topic the events come from, whose position is read and stored (0 with one partition)."""

    def apply_rows(self, table: TableRef, batches: Sequence[SnapshotRows], *, partition: int = 0) -> ApplyResult:
        """Apply snapshot rows (bulk upsert by key) and store the last row's key as the snapshot's progress, in
        one transaction. Same outcome as :meth:`apply_batch` of their ``op="r"`` events, which is what this
        default does; SQL targets write the rows in bulk. ``partition`` as for :meth:`apply_batch`."""
        events = [event for batch in batches for event in batch.events()]
        return self.apply_batch(table, events, partition=partition) if partition else self.apply_batch(table, events)

    def arrive(self, table: TableRef, barrier: str, partition: int, partitions: int) -> tuple[BarrierState, str]:
        """Record in the target that ``partition`` of ``table``'s topic reached the table-wide event ``barrier``
        (:func:`~sluice.cdc.partitions.barrier_id`) and say where that event stands, with the error of a failed
        attempt: ``done`` (applied), ``failed`` (the last attempt failed), ``ready`` (every partition
        ``0 .. partitions-1`` reached it and it is not applied yet), else ``waiting``. Safe to call again (each
        check does). Plugins without partition support raise :class:`SyncError` (this default)."""
        raise SyncError(f"table {table.source.qualified}: this apply plugin cannot apply a partitioned topic (partitions: 1)")

    def apply_once(self, table: TableRef, barrier: str, run: Callable[[], None]) -> bool | None:
        """Apply the table-wide event ``barrier`` by calling ``run`` unless it is done, holding a lock that no
        other apply of this table (thread, process or machine) holds meanwhile; then record it done. True when
        ``run`` ran, False when it was done already, None when another holds the lock (ask again later). A
        :class:`SyncError` from ``run`` is recorded as the barrier's failure and raised."""
        raise SyncError(f"table {table.source.qualified}: this apply plugin cannot apply a partitioned topic (partitions: 1)")

    def skip_to(self, table: TableRef, position: Position, position_text: str, partitions: int = 1) -> None:  # noqa: B027
        """Store ``position`` as the stream position of each partition ``0 .. partitions-1`` of ``table``'s topic where
        none or an older one is stored, so the changes at or before it are skipped, never applied (both ways: the
        target side's changes that a copy of the declared source over the target replaces, :mod:`sluice.cdc.reverse`).
        Plugins that store no positions ignore it (this default): such changes are then applied after the copy."""

    def record_stop(self, table: TableRef, error: str) -> None:  # noqa: B027 - optional
        """Record in the target, in a transaction of its own, that ``table`` is stopped by ``error`` (its changes wait
        until :meth:`reset`; an empty ``error`` clears it): a restart reads it with :meth:`stopped` and keeps the
        table stopped. Plugins that store nothing (this default) retry the table's changes after a restart."""

    def stopped(self, table: TableRef) -> str:
        """The error :meth:`record_stop` recorded for ``table`` and no :meth:`reset` cleared since; empty: none."""
        return ""

    @abstractmethod
    def apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        """Apply a schema change to the target table. Raises :class:`SyncError` (``table`` set) when it cannot."""

    @abstractmethod
    def reset(self, table: TableRef) -> None:
        """Forget the stored position and snapshot progress of ``table`` and empty it (``sluice sync resync``); clears
        its :meth:`stopped` error in the same transaction."""

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by any call of this object) means the target connection is gone: the apply loop
        then closes this object and makes a new one, with backoff. Default: never."""
        return False

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
