"""Apply of a table whose topic has several partitions (``partitions: N``, Kafka): its keys in parallel, each in order.

The direction's consumer group (:func:`~sluice.cdc.events.apply_group`) has one member per table in each apply
process; Kafka spreads the table's partitions over the members (threads of one process, processes, machines)
and moves them when one comes or goes. Inside a process, each partition the member owns is a
:class:`PartitionUnit` worked by one of the direction's worker threads (``(table index + partition) % workers``),
polling only that partition's messages (:meth:`~sluice.bus.base.Consumer.poll_partition`) and applying them in
transactions that store that partition's position (:mod:`sluice.cdc.apply_positions`). A key's changes are all
in one partition (:mod:`sluice.cdc.partitions`), so they apply in source order.

**Table-wide events** (schema changes, resync markers, ``TRUNCATE``) are in every partition. A unit that polls
one applies what precedes it, then stops there: it records its arrival in the target and checks about every
:data:`BARRIER_CHECK_S` seconds (:meth:`~sluice.cdc.base.Apply.arrive`). When every partition of the table has
arrived, the first unit to take the table's lock applies the event (:meth:`~sluice.cdc.base.Apply.apply_once`);
every unit then takes the event's schema and goes on. A waiting unit only stops its own partition: its thread
keeps working its other units, and the consumer's per-partition flow control pauses the fetching of that one
partition alone, so a process holding every partition cannot deadlock.

**Errors.** A table-scoped :class:`~sluice.cdc.base.SyncError` stops the table in this process (state ``error``)
and is recorded in the target (:meth:`~sluice.cdc.base.Apply.record_stop`), so a restarted process keeps the
table stopped; a failed table-wide event is recorded in the target too, so units waiting for it in other processes
stop (a unit of a process that was already running arrives fresh and tries it once more). A unit of a table in
error looks ahead in its partition for a resync marker about once a second
(:meth:`~sluice.bus.base.Bus.read_partition`), moves its group there (:meth:`~sluice.bus.base.Consumer.seek`)
and applies it through the barrier, which clears the error.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import msgspec

from sluice.bus.base import Bus, Consumer, Message
from sluice.cdc.base import Apply, ApplyResult, Resolver, SyncError, TableRef
from sluice.cdc.events import ChangeEvent, SchemaChange, Source, decode
from sluice.cdc.state import SyncState

if TYPE_CHECKING:
    from sluice.cdc.apply_loop import ApplyTable

log = logging.getLogger("sluice.cdc.apply")

BARRIER_CHECK_S = 0.1
"""Seconds between two looks at the target by a partition waiting at a table-wide event."""
SCAN_S = 1.0
"""Seconds between two looks for a resync marker in a partition of a table in error."""
RESYNC = "resync"


@dataclass
class Barrier:
    """A table-wide event one partition reached: its identity, the event and its message (committed once passed)."""

    id: str
    event: SchemaChange | ChangeEvent
    message: Message
    checked: bool = False
    """Looked at once: a failure recorded from then on stops the table (the first look retries it)."""


@dataclass
class PartitionUnit:
    """One partition of a partitioned table, as this process applies it."""

    partition: int
    poll_messages: int = 0
    """Messages to poll next (0: ``batch_rows``); fewer while snapshot messages of many rows each arrive."""
    pending: list[Message] = field(default_factory=list)
    """Messages polled after the barrier the unit waits at: applied once it passes."""
    barrier: Barrier | None = None
    next_check: float = 0.0
    scan_from: int | None = None
    """In error: the first offset not yet searched for a resync marker."""
    resumed: bool = False
    """In error, a resync marker was found and the group moved to it: poll again to reach it."""


class PartitionSteps:
    """The partitioned half of :class:`~sluice.cdc.apply_loop.ApplyDirection` (a mixin: it uses its fields)."""

    sync: str
    direction: str
    group: str
    bus: Bus
    state: SyncState
    batch_rows: int
    resolver: Resolver | None
    _local: threading.local

    @abstractmethod
    def _apply_messages(
        self, apply: Apply, table: ApplyTable, messages: list[Message], unit: PartitionUnit | None = None
    ) -> tuple[int, SyncError | None]: ...

    @abstractmethod
    def _applied(self, table: ApplyTable, result: ApplyResult, last: Source, partition: int = 0) -> None: ...

    @abstractmethod
    def _stop(self, table: ApplyTable, error: SyncError, apply: Apply | None = None) -> None: ...

    def _group_consumer(self, table: ApplyTable) -> Consumer:
        """This process's member of the group on the table's topic (created on first use)."""
        consumer = table.consumer
        if consumer is None:
            with table.lock:
                consumer = table.consumer
                if consumer is None:
                    consumer = table.consumer = self.bus.consumer(self.group, table.topic)
        return consumer

    def _step_unit(self, apply: Apply, table: ApplyTable, unit: PartitionUnit) -> bool:
        """Work one partition: poll and apply a batch, or look at the barrier it waits at; False when idle."""
        consumer = self._group_consumer(table)
        p = unit.partition
        if p not in consumer.partitions():
            # Moved to another member (or not ours yet): it starts again from the group's committed offset.
            unit.pending, unit.barrier, unit.scan_from, unit.resumed = [], None, None, False
            return False
        if table.error and not unit.resumed:
            return self._in_error(apply, table, unit, consumer)
        if unit.barrier is not None:
            return self._at_barrier(apply, table, unit, consumer)
        messages = unit.pending or consumer.poll_partition(p, unit.poll_messages or self.batch_rows, 0.0)
        unit.pending = []
        if not messages:
            self.state.mark_idle(self.direction, table.ref.source.qualified, p)
            return False
        try:
            done, error = self._apply_messages(apply, table, messages, unit)
        except Exception:
            unit.pending = messages  # the target went away (else the sync stops): applied again after reconnecting
            raise
        if error is not None:
            self._stop(table, error, apply)
            unit.scan_from = messages[done].offset
        if done:
            consumer.commit(messages[:done], wait=False)  # the positions in the target make a redelivery harmless
        return True

    # ----- the barrier ------------------------------------------------------------------------------

    def _at_barrier(self, apply: Apply, table: ApplyTable, unit: PartitionUnit, consumer: Consumer) -> bool:
        now = time.monotonic()
        barrier = unit.barrier
        if barrier is None or now < unit.next_check:
            return False
        unit.next_check = now + BARRIER_CHECK_S
        state, error = apply.arrive(table.ref, barrier.id, unit.partition, table.partitions)
        name = table.ref.source.qualified
        if state == "failed":
            if barrier.checked:
                self._stop(table, SyncError(error or f"table {name}: a table-wide change failed", table=name), apply)
                return True
            state = "ready"  # recorded by an earlier run: try it again once
        barrier.checked = True
        if state == "waiting":
            return False
        if state == "ready":
            try:
                ran = apply.apply_once(table.ref, barrier.id, lambda: self._table_wide(apply, table, unit, barrier.event))
            except SyncError as exc:
                if exc.table is None:
                    raise
                self._local.rebuild = True
                self._stop(table, exc, apply)
                return True
            if ran is None:
                return False  # another thread or process is applying it
        self._passed(table, barrier.event)
        consumer.commit([barrier.message])
        unit.barrier = None
        return True

    def _table_wide(self, apply: Apply, table: ApplyTable, unit: PartitionUnit, event: SchemaChange | ChangeEvent) -> None:
        """Apply the event every partition reached (in the caller's lock: only this apply does)."""
        if isinstance(event, ChangeEvent):  # TRUNCATE
            result = apply.apply_batch(table.ref, [event], self.resolver, partition=unit.partition)
            self._applied(table, result, event.source, unit.partition)
        elif event.change == RESYNC:
            reset_target(apply, replace(table.ref, source=event.schema), event)
        else:
            apply.apply_schema(table.ref, event)

    def _passed(self, table: ApplyTable, event: SchemaChange | ChangeEvent) -> None:
        """What every partition does once past a table-wide event: take its schema; a resync clears the error."""
        if not isinstance(event, SchemaChange):
            return
        name = table.ref.source.qualified
        with table.lock:
            table.ref = replace(table.ref, source=event.schema)
            if event.change != RESYNC:
                return
            if table.error:
                log.info("sync %s: table %s: resync marker reached, the error is cleared", self.sync, name)
            table.error = ""
            for unit in table.units.values():
                unit.scan_from, unit.resumed = None, False
        self.state.set_state(self.direction, name, "snapshotting")

    # ----- a table in error -------------------------------------------------------------------------

    def _in_error(self, apply: Apply, table: ApplyTable, unit: PartitionUnit, consumer: Consumer) -> bool:
        """About once a second: pass the barrier this unit waits at if it got done meanwhile (a restarted process
        applied it), else look ahead in the partition for a resync marker and move the group to it."""
        now = time.monotonic()
        if now < unit.next_check:
            return False
        unit.next_check = now + SCAN_S
        barrier = unit.barrier
        if barrier is not None:
            state, _ = apply.arrive(table.ref, barrier.id, unit.partition, table.partitions)
            if state == "done":
                self._passed(table, barrier.event)
                apply.record_stop(table.ref, "")  # another process applied it: the stop recorded here is over
                with table.lock:
                    table.error = ""
                self.state.set_state(self.direction, table.ref.source.qualified, "streaming")
                consumer.commit([barrier.message])
                unit.barrier = None
                return True
        if unit.scan_from is None:  # after the barrier (a marker that failed is not tried again), else unapplied ones
            unit.scan_from = barrier.message.offset + 1 if barrier is not None else (consumer.position(unit.partition) or 0)
        marker = self._find_marker(table, unit)
        if marker is None:
            return False
        try:
            consumer.seek(unit.partition, marker)
        except Exception as exc:  # BusError: the partition moved meanwhile; looked at again later
            log.warning("sync %s: table %s: resync waits: %s", self.sync, table.ref.source.qualified, exc)
            return False
        unit.pending, unit.barrier, unit.resumed = [], None, True
        return True

    def _find_marker(self, table: ApplyTable, unit: PartitionUnit) -> int | None:
        """The offset of the next resync marker in the unit's partition from ``scan_from``, or None (so far)."""
        while unit.scan_from is not None:
            messages = self.bus.read_partition(table.topic, unit.partition, unit.scan_from, 1000)
            if not messages:
                return None
            for message in messages:
                if RESYNC.encode() in message.value and is_resync(message.value):
                    return message.offset
            unit.scan_from = messages[-1].offset + 1
        return None


def reset_target(apply: Apply, ref: TableRef, marker: SchemaChange) -> None:
    """Empty ``ref``'s target table and forget its positions (a resync; ``ref`` has the marker's fresh schema),
    then give the table the columns of that schema: a column added, dropped or changed at the source while the
    sync was stopped is in no stream a resync reads, and the new snapshot's rows carry it. Raises
    :class:`SyncError` (``table`` set) when the target refuses (a primary key that changed, for one)."""
    apply.reset(ref)
    apply.prepare([ref])
    apply.apply_schema(ref, marker)


def is_resync(value: bytes) -> bool:
    """Whether a bus value is a resync marker (:class:`SchemaChange` with ``change="resync"``)."""
    try:
        event = decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return isinstance(event, SchemaChange) and event.change == RESYNC


def unit_thread(table_index: int, partition: int, workers: int) -> int:
    """The worker thread (``0 .. workers-1``) that works ``partition`` of the ``table_index``-th table: spread so
    that the partitions of one table go to different threads."""
    return (table_index + partition) % workers
