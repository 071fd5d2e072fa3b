"""Apply one direction of a sync: consume the change topics of the source side, write the target.

One consumer group per direction (:func:`~sluice.cdc.events.apply_group`). A table topic with one partition
(the default) has one exclusive consumer, so its changes arrive in source order. Tables are spread over
``workers`` threads, each with its own :class:`~sluice.cdc.base.Apply` (database connections are not shared
between threads); a table always stays with one thread, which keeps each key's order while tables are
applied in parallel (the drivers release the GIL during I/O). With ``partitions: N`` (Kafka) a table's
partitions are spread over the group's members and this process's threads, each applied in order
(:mod:`sluice.cdc.apply_partitioned`), so one table's keys apply in parallel too. A thread polls its tables in turn, decodes up to
``batch_rows`` rows, applies them in one :meth:`Apply.apply_batch` (snapshot rows: :meth:`Apply.apply_rows`)
transaction (schema changes through :meth:`Apply.apply_schema`), then commits the bus offsets: a crash in
between delivers the messages again and apply skips what its stored position covers. Both ways, a batch whose
newer-wins resolver lacks a local commit time is rolled back and run again once the target side's capture has
read it (:func:`~sluice.cdc.conflicts.lookups_outside`): the wait holds no target transaction open.

A table created at the source while the sync runs (matching ``tables:``) is announced by capture on the side's
heartbeat topic (a :class:`SchemaChange`, :meth:`~sluice.cdc.capture_loop.CaptureSide._schema_change`). An apply
in capture's process is told directly; any other (``--processes 2``, ``--role apply``) reads the announcements
(:meth:`ApplyDirection.discover`, about once a second, from the topic's end when its tables were listed), creates
the target table (:meth:`Apply.prepare`) and applies the table's topic from its start.

A :class:`SyncError` naming a table stops only that table (state ``error``; its messages wait on the bus until
``sluice sync resync``); any other error stops the sync. Unless transient (contention a restart may not meet
again), the stop is recorded in the target (:meth:`Apply.record_stop`, the table's positions row): a restarted
apply reads it (:meth:`Apply.stopped`) before it touches the table, so the table stays stopped and its changes
wait, across restarts and ``kill -9``, until a resync empties the table and clears the record.

Resync when capture runs in another process: capture publishes a resync marker (a :class:`SchemaChange` with
``change="resync"`` and the table's fresh schema) on the table's topic before the new snapshot rows. Apply
empties the target table (:meth:`Apply.reset`) and clears the table's error when it consumes the marker, so
the snapshot rows that follow land in an empty table. A table in error looks ahead on its topic (about once a
second, :meth:`Bus.read`) for a marker and moves its group there, skipping the changes the resync replaces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import msgspec

from sluice.bus.base import Bus, Consumer, Message
from sluice.cdc.apply_partitioned import (
    RESYNC,
    Barrier,
    PartitionSteps,
    PartitionUnit,
    is_resync,
    reset_target,
    unit_thread,
)
from sluice.cdc.base import Apply, ApplyResult, Resolver, SyncError, TableRef, first_line
from sluice.cdc.checkpoint import last_heartbeat, read_progress, silent_after_s
from sluice.cdc.conflicts import lookups_outside
from sluice.cdc.events import (
    ChangeEvent,
    SchemaChange,
    SnapshotRows,
    Source,
    apply_group,
    change_topic,
    decode,
    heartbeat_topic,
)
from sluice.cdc.partitions import barrier_id, ensure_partitions, is_table_wide
from sluice.cdc.state import SyncState
from sluice.cdc.status import with_path
from sluice.errors import BusError

log = logging.getLogger("sluice.cdc.apply")

IDLE_SLEEP_S = 0.02
TRANSIENT_RETRIES = 5
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 30.0
"""Seconds between two attempts to reach a target that went away: doubling from the first to the most."""
RESYNC_SCAN_S = 1.0
"""Seconds between two looks for a resync marker on the topic of a table in error."""


@dataclass
class ApplyTable:
    """One table of one direction as apply runs it."""

    ref: TableRef
    topic: str
    consumer: Consumer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False
    error: str = ""
    poll_messages: int = 0
    """Messages to poll next (0: ``batch_rows``); fewer while snapshot messages of many rows each arrive."""
    scan_from: int = 0
    """In error: the offset of the failed message, then the first offset not yet searched for a resync marker."""
    next_scan: float = 0.0
    moved_to_resync: bool = False
    """In error: the group was moved to a resync marker; the consumer reads on (a new one may take seconds to
    join the group on Kafka) without looking for the marker again until it is applied or fails."""
    pending: list[Message] = field(default_factory=list)
    """Polled messages not applied because the target went away: applied first on the next step."""
    partitions: int = 1
    """Partitions of the table's topic; above 1 each is one of :attr:`units` (:mod:`sluice.cdc.apply_partitioned`)."""
    units: dict[int, PartitionUnit] = field(default_factory=dict)
    restored: bool = False
    """What an earlier run recorded in the target (a stop, the position) was read (:meth:`ApplyDirection._restore`)."""


class ApplyDirection(PartitionSteps):
    """Apply of ``source_side -> target_side``: worker threads over the tables' consumers (``partitions``: of
    each table's topic, from the sync's settings)."""

    def __init__(
        self,
        sync: str,
        source_side: str,
        target_side: str,
        refs: Sequence[TableRef],
        bus: Bus,
        make_apply: Callable[[], Apply],
        state: SyncState,
        direction: str,
        batch_rows: int,
        resolver: Resolver | None = None,
        workers: int = 4,
        partitions: int = 1,
        new_table: Callable[[SchemaChange], TableRef | None] | None = None,
        announced_from: int = 0,
        heartbeat_s: float = 10.0,
    ) -> None:
        self.sync, self.source_side, self.target_side = sync, source_side, target_side
        self.bus, self.make_apply, self.state, self.direction = bus, make_apply, state, direction
        self.batch_rows, self.resolver = batch_rows, resolver
        self.group = apply_group(sync, source_side)
        self.tables: dict[str, ApplyTable] = {}
        self.workers = max(1, workers)
        self.partitions = partitions
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._next_settle = 0.0
        self.new_table = new_table
        """The ref of a table capture announced (None: the sync leaves it out); None: no look at announcements."""
        self.announced = announced_from
        """The first offset of the side's heartbeat topic not yet read for announced tables."""
        self._next_discover = 0.0
        self.silent_after_s = silent_after_s(heartbeat_s)
        """Seconds without a heartbeat of the source side's capture after which an idle table's lag counts."""
        self._next_watch = 0.0
        self._checkpointed = False
        """Capture of the source side has published a heartbeat (read by :meth:`watch_capture`)."""
        self.hold: threading.Event | None = None
        """Both ways, the direction into the declared source: nothing is applied until it is set (the capture of
        the declared source knows whether it copies the source over the target, :mod:`sluice.cdc.reverse`)."""
        for ref in refs:
            self.add(ref)

    def add(self, ref: TableRef) -> ApplyTable:
        """Start applying ``ref`` (also for a table capture found while running)."""
        with self._lock:
            table = self.tables.get(ref.source.qualified)
            if table is None:
                topic = change_topic(self.sync, self.source_side, ref.source.qualified)
                ensure_partitions(self.bus, topic, self.partitions, self.sync)  # before a consumer makes it with one
                table = ApplyTable(ref, topic, partitions=self.partitions)
                if self.partitions > 1:
                    table.units = {p: PartitionUnit(p) for p in range(self.partitions)}
                self.tables[ref.source.qualified] = table
                self.state.table(self.direction, ref.source.qualified, ref.target_qualified)
            return table

    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._worker, args=(index,), name=f"apply-{self.direction}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def drained(self) -> bool:
        """Every table not in error (or in error with a resync marker to reach) has nothing left on the bus for this
        group."""
        for table in list(self.tables.values()):
            if table.error and not table.moved_to_resync:
                continue
            if table.consumer is None or self.bus.lag(self.group, table.topic) > 0:
                return False
        return True

    def pause(self, source_table: str) -> ApplyTable | None:
        """Stop applying ``source_table`` and wait until its worker is not inside it (resync)."""
        table = self.tables.get(source_table)
        if table is None:
            return None
        with table.lock:
            table.paused = True
        return table

    def resume(self, source_table: str, ref: TableRef | None = None) -> None:
        table = self.tables.get(source_table)
        if table is not None:
            with table.lock:
                if ref is not None:
                    table.ref = ref
                table.paused, table.error, table.moved_to_resync = False, "", False
            self.state.set_state(self.direction, source_table, "streaming")

    def stop_table(self, source_table: str, error: SyncError) -> None:
        """Stop ``source_table`` paused by :meth:`pause` with ``error`` (its reset failed): state ``error``, the
        other tables go on; a later :meth:`resume` (a resync that succeeds) clears it."""
        table = self.tables.get(source_table)
        if table is None:
            return
        with table.lock:
            table.paused = False
            table.scan_from, table.next_scan = self.bus.end_offset(table.topic), 0.0
            self._stop(table, error)

    def _mine(self, index: int) -> list[tuple[ApplyTable, PartitionUnit | None]]:
        """What worker ``index`` works: whole tables with one partition, single partitions of the others."""
        with self._lock:
            names = sorted(self.tables)
        out: list[tuple[ApplyTable, PartitionUnit | None]] = []
        for position, name in enumerate(names):
            table = self.tables[name]
            if table.partitions == 1:
                if hash(name) % self.workers == index:
                    out.append((table, None))
                continue
            out += [(table, unit) for p, unit in table.units.items() if unit_thread(position, p, self.workers) == index]
        return out

    def _worker(self, index: int) -> None:
        apply: Apply | None = None
        delay = RECONNECT_FIRST_S
        try:
            while not self.state.stop.is_set():
                try:
                    if apply is None:
                        apply = self.make_apply()
                    busy, apply = self._pass(index, apply)
                except Exception as exc:
                    if not (isinstance(exc, SyncError) and target_lost(exc)) and not (apply is not None and apply.lost(exc)):
                        raise
                    # The target went away (a restart, a failover): what was polled waits in ``pending``; the
                    # positions stored in the target say what of it is already applied.
                    reason = str(exc) if isinstance(exc, SyncError) else f"the target went away ({first_line(exc)})"
                    log.warning("sync %s: apply %s: %s; connecting again in %.1f s", self.sync, self.direction, reason, delay)
                    if apply is not None:
                        close_quietly(apply)
                        apply = None
                    self.state.stop.wait(delay)
                    delay = min(RECONNECT_MAX_S, delay * 2)
                    continue
                if delay > RECONNECT_FIRST_S:
                    log.info("sync %s: apply %s: connected to the target again", self.sync, self.direction)
                    delay = RECONNECT_FIRST_S
                if not busy:
                    self.state.stop.wait(IDLE_SLEEP_S)
        except Exception as exc:
            log.exception("apply %s failed", self.direction)
            self.state.fail(exc)
        finally:
            for table, _ in self._mine(index):
                consumer = table.consumer
                if consumer is not None:  # a partitioned table's is shared: closing twice is harmless
                    consumer.close()
                    table.consumer = None
            if apply is not None:
                close_quietly(apply)

    def _pass(self, index: int, apply: Apply) -> tuple[bool, Apply]:
        """One turn over the tables of worker ``index``: whether any had work, and the apply to use next."""
        busy = False
        if self.hold is not None and not self.hold.is_set():
            return busy, apply
        for table, unit in self._mine(index):
            if self.state.stop.is_set():
                break
            if table.paused:
                continue
            if not table.restored:
                with table.lock:
                    if table.paused:
                        continue
                    self._restore(apply, table)
            if unit is not None:
                busy = self._step_unit(apply, table, unit) or busy
            else:
                with table.lock:
                    if table.paused or (table.error and not table.moved_to_resync and not self._find_resync(table)):
                        continue
                    busy = self._step(apply, table) or busy
            if getattr(self._local, "rebuild", False):
                # The failed statement may have left the connection unusable: start a fresh one.
                self._local.rebuild = False
                apply.close()
                apply = self.make_apply()
        if index == 0:
            self.discover(apply)
            self.watch_capture()
            self._settle_states()
        return busy, apply

    def _step(self, apply: Apply, table: ApplyTable) -> bool:
        """Poll and apply one batch of ``table``; False when there was nothing."""
        if table.consumer is None:
            table.consumer = self.bus.consumer(self.group, table.topic, exclusive=True)
        messages = table.pending or table.consumer.poll(table.poll_messages or self.batch_rows, 0.0)
        table.pending = []
        if not messages:
            self.state.mark_idle(self.direction, table.ref.source.qualified)
            return False
        try:
            done, error = self._apply_messages(apply, table, messages)
        except Exception:
            table.pending = messages  # the target went away (else the sync stops): applied again after reconnecting
            raise
        if error is not None:
            self._stop(table, error, apply)
            failed = messages[done]  # a resync marker that failed is not tried again: look for a later one
            table.scan_from, table.next_scan = failed.offset + (1 if is_resync(failed.value) else 0), 0.0
        if done:
            table.consumer.commit(messages[:done], wait=False)  # the positions in the target make a redelivery harmless
        return True

    def _stop(self, table: ApplyTable, error: SyncError, apply: Apply | None = None) -> None:
        """Stop ``table`` (state ``error``); its messages wait on the bus. Logged once per table (the partitions of
        a partitioned table stop one by one). Unless ``error`` is transient, the stop is recorded in the target
        (through ``apply``, else a connection of its own) so that a restart keeps the table stopped."""
        if not table.error:
            shown = with_path(str(error), self.state.shown_path)
            log.error("sync %s: table %s stopped: %s", self.sync, table.ref.source.qualified, shown)
        table.error, table.moved_to_resync = str(error), False
        self.state.set_state(self.direction, table.ref.source.qualified, "error", str(error))
        if not error.transient:
            self._record_stop(table, str(error), apply)

    def _record_stop(self, table: ApplyTable, error: str, apply: Apply | None) -> None:
        """:meth:`Apply.record_stop` through ``apply``, else (none, or its connection broken by the failure) a new one."""
        if apply is not None:
            try:
                apply.record_stop(table.ref, error)
                return
            except Exception as exc:
                log.debug("recording the stop of %s failed: %s; on a new connection", table.ref.source.qualified, exc)
        try:
            fresh = self.make_apply()
            try:
                fresh.record_stop(table.ref, error)
            finally:
                close_quietly(fresh)
        except Exception as exc:
            log.warning(
                "sync %s: table %s: its stop could not be recorded in the target (%s); a restart tries its changes again",
                self.sync,
                table.ref.source.qualified,
                first_line(exc),
            )

    def _restore(self, apply: Apply, table: ApplyTable) -> None:
        """Before this process first applies ``table``: show the position an earlier run stored (the status shows it
        from the start, not from the first new change), and stop the table again when an earlier run recorded it
        stopped in the target (its changes wait on the bus until a resync), looking on its topic for a resync
        marker from the group's committed offset. Called with the table's lock held."""
        name = table.ref.source.qualified
        self.state.show_stored_position(self.direction, name, apply.stored_position_text(table.ref))  # a lost target raises
        error = "" if table.error else apply.stopped(table.ref)
        table.restored = True
        if not error:
            return
        log.warning("sync %s: table %s is still stopped: %s", self.sync, name, with_path(error, self.state.shown_path))
        if table.partitions == 1:
            table.scan_from, table.next_scan = self.bus.committed(self.group, table.topic) or 0, 0.0
            self._find_resync(table)  # before the error shows: ``drained`` waits for a marker found now
        table.error = error
        self.state.set_state(self.direction, name, "error", error)

    def _apply_messages(
        self, apply: Apply, table: ApplyTable, messages: list[Message], unit: PartitionUnit | None = None
    ) -> tuple[int, SyncError | None]:
        """Apply ``messages`` in order: how many are done (all, or those before a table's error) and that error.

        Consecutive change events go to one :meth:`Apply.apply_batch`; consecutive snapshot messages to one
        :meth:`Apply.apply_rows` per ``batch_rows`` rows. With a ``unit`` (one partition of a partitioned
        table) a table-wide event ends the run: the unit waits at it (:attr:`PartitionUnit.barrier`), the
        messages after it kept for later, and the count done is of those before it."""
        run: list[ChangeEvent] = []
        snapshot: list[SnapshotRows] = []
        snapshot_rows = most_rows = 0
        done = 0
        name = table.ref.source.qualified
        try:
            for index, message in enumerate(messages):
                try:
                    event = decode(message.value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise SyncError(
                        f"table {name}: undecodable change at offset {message.offset} of {table.topic}: {exc}", table=name
                    ) from None
                if isinstance(event, SnapshotRows):
                    if run:
                        self._batch(apply, table, run, unit)
                        done, run = index, []
                    if snapshot and snapshot_rows + len(event.rows) > self.batch_rows:
                        self._snapshot_rows(apply, table, snapshot, unit)
                        done, snapshot, snapshot_rows = index, [], 0
                    snapshot.append(event)
                    snapshot_rows += len(event.rows)
                    most_rows = max(most_rows, len(event.rows))
                    continue
                if snapshot:
                    self._snapshot_rows(apply, table, snapshot, unit)
                    done, snapshot, snapshot_rows = index, [], 0
                if isinstance(event, ChangeEvent) and (unit is None or event.op != "t"):
                    run.append(event)
                    continue
                if run:
                    self._batch(apply, table, run, unit)
                    done, run = index, []
                if unit is not None and is_table_wide(event):
                    assert isinstance(event, SchemaChange | ChangeEvent)
                    unit.barrier = Barrier(barrier_id(message.value, event.source.position_text), event, message)
                    unit.pending = messages[index + 1 :]
                    unit.next_check = 0.0
                    return index, None
                if isinstance(event, SchemaChange) and event.change == RESYNC:
                    self._reset(apply, table, event)
                elif isinstance(event, SchemaChange):
                    try:
                        apply.apply_schema(table.ref, event)  # errors: SyncError naming the table
                    except SyncError:
                        self._local.rebuild = True
                        raise
                    table.ref = replace(table.ref, source=event.schema)
                done = index + 1
            if run:
                self._batch(apply, table, run, unit)
            if snapshot:
                self._snapshot_rows(apply, table, snapshot, unit)
            # Snapshot messages hold thousands of rows: poll about ``batch_rows`` rows' worth of them next.
            poll = max(1, self.batch_rows // most_rows) if most_rows else 0
            if unit is not None:
                unit.poll_messages = poll
            else:
                table.poll_messages = poll
            return len(messages), None
        except SyncError as exc:
            if exc.table is None:
                raise
            return done, exc

    def discover(self, apply: Apply) -> None:
        """About once a second: start applying the tables capture announced on the side's heartbeat topic since
        :attr:`announced` (a table created at the source while the sync runs), each after ``apply`` made its
        target table. A table this process applies already (capture runs here and told it) is passed over; a
        target that refuses the table stops that table only."""
        now = time.monotonic()
        if self.new_table is None or now < self._next_discover:
            return
        self._next_discover = now + RESYNC_SCAN_S
        topic = heartbeat_topic(self.sync, self.source_side)
        while self.announced < self.bus.end_offset(topic):
            messages = self.bus.read(topic, self.announced, 1000)
            if not messages:
                return
            for message in messages:
                try:
                    event = decode(message.value)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    event = None
                if isinstance(event, SchemaChange) and event.table not in self.tables:
                    ref = self.new_table(event)
                    if ref is not None:
                        self._join(apply, ref)  # a lost target raises: read again after reconnecting
                self.announced = message.offset + 1

    def watch_capture(self) -> None:
        """About once a second: tell the state the source time of the newest heartbeat of the source side's
        capture (:meth:`SyncState.vouch`). A table with nothing left to apply has lag 0 only while that heartbeat
        is recent: when capture stops (killed, or cut off from its source, in this process or another), its
        tables' lag grows from the last heartbeat instead of staying 0, so an alert on lag fires. (Debezium's
        ``MilliSecondsSinceLastEvent`` and PostgreSQL's ``replay_lag`` leave a dead sender to other checks.)"""
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + RESYNC_SCAN_S
        beat = last_heartbeat(self.bus, self.sync, self.source_side)
        self._checkpointed = beat is not None
        if beat is not None:
            self.state.vouch(self.direction, beat.source.commit_ts_us, self.silent_after_s)

    def _join(self, apply: Apply, ref: TableRef) -> None:
        """Make the target table of ``ref`` (``apply: {create_tables: ...}``), then apply it."""
        try:
            apply.prepare([ref])
        except SyncError as exc:
            if exc.table is None:
                raise
            self._local.rebuild = True
            table = self.add(ref)
            with table.lock:
                self._stop(table, exc)
            return
        log.info("sync %s: table %s found at the source: applying it", self.sync, ref.source.qualified)
        self.add(ref)

    def _settle_states(self) -> None:
        """About once a second: a table still ``waiting`` or ``snapshotting`` whose topic is drained becomes
        ``streaming`` when capture recorded its snapshot done (or, without a snapshot, checkpointed at all).
        Capture sets the states where it runs; this covers a process that only applies."""
        now = time.monotonic()
        if now < self._next_settle:
            return
        self._next_settle = now + RESYNC_SCAN_S
        with self.state.lock:
            pending = [
                t for t in list(self.tables.values())
                if self.state.table(self.direction, t.ref.source.qualified).state in ("waiting", "snapshotting")
            ]  # fmt: skip
        if not pending:
            return
        progress = read_progress(self.bus, self.sync, self.source_side)
        checkpointed = self._checkpointed  # watch_capture read the heartbeat topic just before
        for table in pending:
            name = table.ref.source.qualified
            entry = progress.tables.get(name) if progress is not None else None
            done = entry.done if entry is not None else checkpointed
            if done and table.consumer is not None and self.bus.lag(self.group, table.topic) == 0:
                with self.state.lock:
                    record = self.state.table(self.direction, name)
                    if record.state in ("waiting", "snapshotting"):
                        record.state = "streaming"

    def _find_resync(self, table: ApplyTable) -> bool:
        """For a table in error: whether a resync marker follows on its topic; if so, move the group to it
        (the changes before it are replaced by the new snapshot) and let the worker consume it."""
        now = time.monotonic()
        if now < table.next_scan:
            return False
        table.next_scan = now + RESYNC_SCAN_S
        while True:
            messages = self.bus.read(table.topic, table.scan_from, 1000)
            if not messages:
                return False
            for message in messages:
                if RESYNC.encode() in message.value and is_resync(message.value):
                    table.scan_from = message.offset
                    if table.consumer is not None:
                        # Leave the group first: Kafka moves only a group without members, and a closing member
                        # commits what it completed, which must not undo the move.
                        table.consumer.close()
                        table.consumer = None
                    try:
                        self.bus.seek(self.group, table.topic, message.offset)
                    except BusError as exc:
                        log.warning("sync %s: table %s: resync waits: %s", self.sync, table.ref.source.qualified, exc)
                        return False
                    table.moved_to_resync = True
                    return True
            table.scan_from = messages[-1].offset + 1

    def _reset(self, apply: Apply, table: ApplyTable, marker: SchemaChange) -> None:
        """The resync marker: empty the target table, forget its position, take the fresh schema, clear the error."""
        ref = replace(table.ref, source=marker.schema)
        try:
            reset_target(apply, ref, marker)
        except SyncError:
            self._local.rebuild = True
            raise
        table.ref, table.error, table.moved_to_resync = ref, "", False
        self.state.set_state(self.direction, ref.source.qualified, "snapshotting")

    def _snapshot_rows(self, apply: Apply, table: ApplyTable, batches: list[SnapshotRows], unit: PartitionUnit | None) -> None:
        if unit is None:
            result = _retrying(lambda: apply.apply_rows(table.ref, batches))
        else:
            result = _retrying(lambda: apply.apply_rows(table.ref, batches, partition=unit.partition))
        self._applied(table, result, batches[-1].source, unit.partition if unit is not None else 0)

    def _batch(self, apply: Apply, table: ApplyTable, events: list[ChangeEvent], unit: PartitionUnit | None) -> None:
        # Under ``lookups_outside`` a newer-wins resolver waits for the target's capture with no transaction open.
        if unit is None:  # plugins written before partitions need not take ``partition``
            result = lookups_outside(lambda: _retrying(lambda: apply.apply_batch(table.ref, events, self.resolver)))
        else:
            result = lookups_outside(
                lambda: _retrying(lambda: apply.apply_batch(table.ref, events, self.resolver, partition=unit.partition))
            )
        self._applied(table, result, events[-1].source, unit.partition if unit is not None else 0)

    def _applied(self, table: ApplyTable, result: ApplyResult, last: Source, partition: int = 0) -> None:
        self.state.applied(
            self.direction,
            table.ref.source.qualified,
            result.applied,
            result.conflicts,
            result.dead_letters,
            last.position_text,
            0 if last.snapshot else last.commit_ts_us,
            partition,
        )
        with self.state.lock:
            # Capture sets the state where it runs; this covers a process that only applies.
            record = self.state.table(self.direction, table.ref.source.qualified)
            if record.state == "waiting":
                record.state = "snapshotting" if last.snapshot else "streaming"
            elif record.state == "snapshotting" and not last.snapshot:
                record.state = "streaming"


def target_lost(exc: SyncError) -> bool:
    """Whether ``exc`` says the target cannot be reached (connect refused, connection lost): transient and not
    about one table. The worker then reconnects with backoff (:data:`RECONNECT_FIRST_S` to
    :data:`RECONNECT_MAX_S`) for as long as it takes."""
    return exc.transient and exc.table is None


def close_quietly(apply: Apply) -> None:
    """Close ``apply``; a connection already broken may refuse even that."""
    try:
        apply.close()
    except Exception as exc:
        log.debug("closing the apply connection: %s", exc)


def _retrying(run: Callable[[], ApplyResult]) -> ApplyResult:
    """``run()``, again after a pause (0.2 s doubling, at most 5 s) on a transient :class:`SyncError` of a table
    (contention), up to :data:`TRANSIENT_RETRIES` times; a lost target is raised at once (the worker reconnects)."""
    for attempt in range(TRANSIENT_RETRIES):
        try:
            return run()
        except SyncError as exc:
            if not exc.transient or target_lost(exc):
                raise
            time.sleep(min(5.0, 0.2 * 2**attempt))
    return run()
