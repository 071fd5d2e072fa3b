"""Capture one side of a sync: snapshot (when needed), then stream, publishing every change on the bus.

Where the stream starts (first that applies):

1. ``--resnapshot`` (or ``snapshot: when_needed`` after the position was purged): forget everything, reset the
   target tables (when this process also applies), snapshot every table, stream from the position read
   before the snapshot;
2. the checkpoint: the last heartbeat of the side (:mod:`sluice.cdc.checkpoint`), published after the changes
   it covers were on the bus;
3. without a checkpoint (the bus was lost or never used): the least position apply stored in the target
   over the tables, so nothing is lost (apply skips what it already has);
4. else the position read before the snapshot, or the source's position at start (``snapshot: never``).

Not the least of (checkpoint, apply's positions) always: a table nobody writes keeps an old stored position
and would pull the stream back to where the source may have purged its log.

Tables without a finished snapshot (first start, a table added to ``tables:``, a resync) are read in
chunks first; each chunk is published (as :class:`~sluice.cdc.events.SnapshotRows` messages of a few thousand
rows), then recorded in the snapshot progress, so an interrupted snapshot
resumes after its last published chunk. Every snapshot row carries the position read before that snapshot
began, so apply never skips a stream change that the snapshot might have missed; the chunks of a resumed
snapshot carry the position read when it resumed. Nothing of the stream is published while a table's snapshot
is unfinished (a stop during a snapshot ends capture there), so apply never stores a stream position ahead of
chunks still to come and then skips them as repeats; the restart resumes the snapshot and then streams from
the oldest position its chunks carry. This is the snapshot-then-replay scheme: a row read in a chunk at time
T is overwritten by the replayed changes after the position it carries, each a whole row by key, so the
table converges on the source (the watermark scheme of Netflix's DBLog, Andreakis and Papapanagiotou 2019,
reads chunks while the stream runs instead; here the stream waits).

With ``partitions: N`` (> 1, Kafka) each table's topic is created with N partitions and capture picks the
partition of every message (:mod:`sluice.cdc.partitions`): a row change goes to its key's, snapshot rows are
split by key, and table-wide events (schema changes, resync markers, ``TRUNCATE``) go to every partition.
A resync then always travels as markers, even when this process also applies: other processes may apply
some of the partitions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sluice.bus.base import Bus
from sluice.cdc.apply_loop import ApplyDirection
from sluice.cdc.apply_partitioned import RESYNC, reset_target
from sluice.cdc.base import Apply, Capture, ChangeBatch, PositionLost, SyncError, TableRef
from sluice.cdc.checkpoint import (
    SnapshotProgress,
    TableProgress,
    idle_heartbeat_s,
    last_heartbeat,
    read_progress,
    silent_after_s,
    write_heartbeat,
    write_progress,
)
from sluice.cdc.config import SyncSettings
from sluice.cdc.conflicts import LocalVersions
from sluice.cdc.events import (
    RESTART,
    ChangeEvent,
    Event,
    Heartbeat,
    Position,
    SchemaChange,
    Source,
    TableSchema,
    apply_group,
    change_topic,
    encode,
    heartbeat_topic,
    key_text,
)
from sluice.cdc.partitions import ensure_partitions, route
from sluice.cdc.reverse import ReverseReset
from sluice.cdc.snapshot_messages import partitioned_snapshot_messages, snapshot_messages
from sluice.cdc.state import SyncState, handled, resync_dir, resync_requests
from sluice.cdc.tables import announced_ref

log = logging.getLogger("sluice.cdc.capture")

SnapshotProgressHook = Callable[[str, str, int, int | None, float, int, bool], None]
"""Called after each published chunk of a table's snapshot: ``(direction, table, rows, estimate, seconds, read,
finished)``: rows published for the table so far (an interrupted snapshot's earlier runs included), the catalog's
estimate of its rows (None when unknown), seconds since this run began the table, rows this run read (for a rate),
and whether that chunk was the table's last."""

CHECKPOINT_EVERY_S = 1.0
"""Least seconds between two checkpoints while changes flow."""
MAX_WAIT_S = 0.25
"""The stream yields at least this often, so stop, ``--once`` and resync requests are seen quickly."""


class CaptureSide:
    """Capture of ``side`` for the direction ``side -> target_side``."""

    def __init__(
        self,
        settings: SyncSettings,
        side: str,
        capture: Capture,
        bus: Bus,
        refs: Sequence[TableRef],
        state: SyncState,
        direction: str,
        *,
        target_namespace: str,
        control: Apply | None = None,
        applier: ApplyDirection | None = None,
        local: LocalVersions | None = None,
        snapshot_mode: str = "initial",
        resnapshot: bool = False,
        until: Position | None = None,
        start_position: tuple[Position, str] | None = None,
        work_dir: Any = None,
        on_progress: SnapshotProgressHook | None = None,
        sync_tables: Callable[[], set[str]] | None = None,
        reverse: ReverseReset | None = None,
        restart: bool = False,
    ) -> None:
        self.settings, self.sync, self.side = settings, settings.name, side
        self.partitions = settings.partitions
        self.capture, self.bus, self.state, self.direction = capture, bus, state, direction
        self.refs = {ref.source.qualified: ref for ref in refs}
        self.target_namespace = target_namespace
        self.control, self.applier, self.local = control, applier, local
        self.mode, self.resnapshot, self.until = snapshot_mode, resnapshot, until
        self.start_position = start_position
        self.until_wall_us = time.time_ns() // 1000
        """Wall time the end position (``until``) was read, about."""
        self.work_dir = work_dir
        self.on_progress = on_progress
        self.sync_tables = sync_tables
        """The tables of every capture of the sync in this process (both ways: two): a resync request none of
        them has is dropped with a warning (default: this capture's)."""
        self.reverse = reverse
        """Both ways, the capture of the declared source: the other direction, told of each copy over the target."""
        self.restart = restart
        """Both ways with ``--resnapshot``, the target side's capture: start at ``start_position``, not the checkpoint."""
        self.progress: SnapshotProgress | None = None
        self.position: Position | None = None
        self.position_text = ""
        self.finished = False
        self.failed: set[str] = set()
        """Tables whose target refused its reset (a table error): not snapshotted until a resync succeeds."""
        self._last_checkpoint = 0.0
        self._last_heartbeat = 0.0
        for ref in refs:
            state.table(direction, ref.source.qualified, ref.target_qualified)

    # ----- start -------------------------------------------------------------------------------------

    def run(self) -> None:
        """Snapshot and stream until stopped (or ``until`` is reached); failures go to the shared state."""
        try:
            self._run()
        except Exception as exc:
            if not isinstance(exc, SyncError):
                log.exception("capture %s failed", self.side)
            self.state.fail(exc)
        finally:
            self.finished = True
            if self.reverse is not None:
                self.reverse.release()

    def _run(self) -> None:
        for ref in self.refs.values():  # before anything is published: a topic made on first use has one partition
            ensure_partitions(self.bus, change_topic(self.sync, self.side, ref.source.qualified), self.partitions, self.sync)
        try:
            start = self._prepare(self.resnapshot)
            if self.mode == "initial_only" or self._snapshot_cut_short():
                return
            self._handle_resyncs()
            if self._snapshot_cut_short():
                return
            self._stream(start)
        except PositionLost as exc:
            if self.mode != "when_needed":
                raise PositionLost(
                    f"sync '{self.sync}': capture of {self.side} cannot resume: {without_hint(str(exc))}. Run "
                    f"'sluice sync PATH --name {self.sync} --resnapshot' to copy the tables again"
                ) from None
            log.warning("sync %s: %s; snapshotting again (snapshot: when_needed)", self.sync, exc)
            start = self._prepare(True)
            if not self._snapshot_cut_short():
                self._stream(start)

    def _snapshot_cut_short(self) -> bool:
        """Whether a stop left a table's snapshot unfinished: then nothing of the stream may be published.

        A stream change published before a table's snapshot is complete would be applied (and its position
        stored) before the table's remaining chunks, which a restart publishes afterwards; the next start
        resumes the snapshot and streams from its position, so stopping here loses nothing."""
        if not self.state.stop.is_set() or self.progress is None:
            return False
        tables = self.progress.tables
        return any(not entry.done for name, entry in tables.items() if name in self.refs and name not in self.failed)

    def _prepare(self, fresh: bool) -> Position:
        """Snapshot what needs it; returns the position the stream starts at."""
        if self.restart and self.start_position is not None:  # what the target had is replaced (cdc/reverse.py)
            self.restart = False
            return self.start_position[0]
        checkpoint = None if fresh else last_heartbeat(self.bus, self.sync, self.side)
        self.progress = None if fresh else read_progress(self.bus, self.sync, self.side)
        if fresh:
            self._reset_targets(list(self.refs.values()))
        if self.mode == "never":
            todo: list[TableRef] = []
        else:
            todo = [ref for ref in self.refs.values() if ref.source.qualified not in self.failed and not self._snapshot_done(ref)]
            for ref in self.refs.values():  # copied by an earlier run: its progress shows done (1), not 0
                if ref not in todo and ref.source.qualified not in self.failed:
                    self.state.snapshot_done(self.direction, ref.source.qualified)
        snapshot_position: Position | None = None
        if todo:
            snapshot_position = self._snapshot(todo)
        candidates = [checkpoint.source.position] if checkpoint is not None else self._stored_positions()
        if snapshot_position is not None:
            candidates.append(snapshot_position)
        elif self.progress is not None and checkpoint is None:
            candidates.append(self.progress.position)
        if candidates:
            return min(candidates)
        if self.start_position is not None:
            return self.start_position[0]
        return self.capture.current_position()[0]

    def _snapshot_done(self, ref: TableRef) -> bool:
        entry = self.progress.tables.get(ref.source.qualified) if self.progress is not None else None
        if entry is not None:
            return entry.done
        if self.control is not None:
            position, _, done = self.control.stored_position(ref)
            # Without any recorded progress (the bus was lost), a stored position means the table was copied.
            return done or (position is not None and self.progress is None)
        return False

    def _stored_positions(self) -> list[Position]:
        if self.control is None:
            return []
        out = []
        for ref in self.refs.values():
            position, _, _ = self.control.stored_position(ref)
            if position is not None:
                out.append(position)
        return out

    def _reset_targets(self, refs: list[TableRef]) -> None:
        """Drop what the bus holds for ``refs`` (this direction's group skips it) and empty the target tables.

        When apply runs in another process (no ``applier`` here), or the topics have several partitions, publish
        a resync marker on each table's topic (every partition) instead: apply empties the table when it
        consumes the marker, before the snapshot rows that follow it (:mod:`sluice.cdc.apply_loop`). Both ways,
        the other direction skips what the target had (:mod:`sluice.cdc.reverse`: before, then after).

        A target that refuses its reset (a :class:`SyncError` naming the table) stops that table only: it joins
        :attr:`failed` (not snapshotted) in state ``error``; a later resync that succeeds takes it out."""
        if self.reverse is not None:
            self.reverse.discard(refs)
        position, text = self.capture.current_position()
        source = Source(
            connector="",
            name=self.side,
            position=position,
            position_text=text,
            commit_ts_us=time.time_ns() // 1000,
            origin=f"{self.sync}/{self.side}",
        )
        for ref in refs:
            name = ref.source.qualified
            topic, marker = change_topic(self.sync, self.side, name), SchemaChange(name, ref.source, RESYNC, source)
            if self.partitions > 1:
                self.bus.publish_partitions([(topic, p, [(name, encode(marker))]) for p in range(self.partitions)])
            elif self.applier is None:
                self.bus.publish(topic, [(name, encode(marker))])
            else:
                self.applier.pause(name)
                self.bus.seek(apply_group(self.sync, self.side), topic, self.bus.end_offset(topic))
                try:
                    if self.control is not None:
                        reset_target(self.control, ref, marker)
                except SyncError as exc:
                    if exc.table is None:
                        raise
                    self.failed.add(name)
                    self.applier.stop_table(name, exc)
                    continue
                self.failed.discard(name)
                self.applier.resume(name, ref)
        if self.reverse is not None:
            self.reverse.settle()

    # ----- snapshot ----------------------------------------------------------------------------------

    def _snapshot(self, refs: list[TableRef]) -> Position:
        """Snapshot ``refs`` in chunks, resuming after the last published key; returns the snapshot position."""
        progress = self.progress
        if progress is None or all(t.done for t in progress.tables.values()) or not progress.tables:
            position, text = self.capture.current_position()
            progress = SnapshotProgress(position, text, dict(progress.tables) if progress else {})
            for ref in refs:
                progress.tables[ref.source.qualified] = TableProgress()
        else:
            for ref in refs:
                progress.tables.setdefault(ref.source.qualified, TableProgress())
        self.progress = progress
        for ref in refs:
            if self.state.stop.is_set():
                break
            self._snapshot_table(ref, progress)
        # The stream starts at the oldest position a snapshot row was stamped with (a resync resumed: its own).
        return min(progress.tables[ref.source.qualified].position or progress.position for ref in refs)

    def _snapshot_table(self, ref: TableRef, progress: SnapshotProgress) -> None:
        name = ref.source.qualified
        entry = progress.tables[name]
        at_position = entry.position or progress.position
        at_text = entry.position_text or progress.position_text
        if entry.last_key is not None or entry.rows:
            # Resuming an interrupted snapshot: the remaining chunks are read now, so they carry the position
            # read now (not stored: the stream still starts at the first chunks' one). A stream change an earlier
            # run applied is older than this, so apply never takes these chunks for a repeat and skips them.
            at_position, at_text = self.capture.current_position()
        self.state.set_state(self.direction, name, "snapshotting")
        topic = change_topic(self.sync, self.side, name)
        started = time.monotonic()
        rows = entry_rows = entry.rows  # an interrupted snapshot's rows read before this run
        if self.control is not None and entry.last_key is None and entry.rows == 0 and self.partitions == 1:
            _, stored_key, _ = self.control.stored_position(ref)
            entry.last_key = stored_key
        for chunk in self.capture.snapshot(ref.source, entry.last_key, self.settings.chunk_rows):
            if self.partitions > 1:
                parts = partitioned_snapshot_messages(ref.source, chunk, at_position, at_text, self.partitions)
                if parts:
                    self.bus.publish_partitions([(topic, p, messages) for p, messages in parts])
            elif messages := snapshot_messages(ref.source, chunk, at_position, at_text):
                self.bus.publish(topic, messages)
            # Counted from the chunk: the plugins report ``rows_read`` since the start of the call.
            count = chunk.count
            rows += count
            entry.last_key, entry.done, entry.rows = chunk.last_key, chunk.done, rows
            write_progress(self.bus, self.sync, self.side, progress)
            self.state.captured(self.direction, name, "r", count)
            self.state.invalid_dates(self.direction, name, chunk.invalid_dates)
            self.state.snapshot_rows(self.direction, name, count, chunk.rows_total_estimate)
            if self.on_progress is not None:
                seconds = time.monotonic() - started
                self.on_progress(self.direction, name, rows, chunk.rows_total_estimate, seconds, rows - entry_rows, chunk.done)
            if self.state.stop.is_set() and not chunk.done:
                return
        entry.done = True
        write_progress(self.bus, self.sync, self.side, progress)
        self.state.snapshot_done(self.direction, name)
        self.state.set_state(self.direction, name, "streaming")

    # ----- stream ------------------------------------------------------------------------------------

    def _stream(self, start: Position) -> None:
        self.position = start
        for name in self.refs:  # every snapshot is done: the tables stream (a --once run with nothing to read too)
            with self.state.lock:  # unless apply in this process stopped it (or kept an earlier run's stop)
                if name not in self.failed and self.state.table(self.direction, name).state != "error":
                    self.state.set_state(self.direction, name, "streaming")
        if not self.capture.ddl_in_stream:
            self._publish_restart(start)
        if self.until is not None and start >= self.until:
            # Nothing to read (``--once``): the source was set up by ``Capture.prepare`` before ``until`` was read.
            self._checkpoint(force=True)
            if self.local is not None:
                self.local.caught_up(self.until_wall_us)
            return
        tables = [ref.source for ref in self.refs.values()]
        next_resync_check = time.monotonic() + 1.0
        for batch in self.capture.stream(start, tables, MAX_WAIT_S):
            read_us = time.time_ns() // 1000  # before publishing and checkpointing, which may take a while
            if self.reverse is not None:  # the stream opened: no copy over the target is due
                self.reverse.release()
            self._publish(batch)
            if batch.invalid_dates or batch.invalid_dates_by_table:
                self._count_invalid_dates(batch)
            self.position, self.position_text = batch.position, batch.position_text
            idle = not batch.events and not batch.skipped_echo
            self._checkpoint(idle=idle, commit_ts_us=batch.commit_ts_us)
            if self.local is not None:
                # An idle batch read the log to its end when it came (not when the checkpoint is done: a commit
                # in between is not read yet); a busy one at least up to its commit time (MySQL: whole seconds).
                self.local.caught_up(read_us - int(MAX_WAIT_S * 1e6) if idle else batch.commit_ts_us - 1_000_000)
            if self.until is not None and batch.position >= self.until:
                self._checkpoint(force=True)
                if self.local is not None:
                    # Everything committed before the end position was read: local versions are all known.
                    self.local.caught_up(self.until_wall_us)
                return
            if self.state.stop.is_set():
                self._checkpoint(force=True)
                return
            if time.monotonic() >= next_resync_check:
                next_resync_check = time.monotonic() + 1.0
                if self._handle_resyncs() and self._snapshot_cut_short():
                    return  # a stop cut a resync's snapshot short: its table's stream waits for the restart

    def _publish_restart(self, start: Position) -> None:
        """Publish each table's schema as read at start (a :data:`RESTART` :class:`SchemaChange`) ahead of its
        stream, for a source whose stream carries no DDL (:attr:`Capture.ddl_in_stream`): a change made while the
        sync was stopped is in no row change still to come (a rename with no write after it) or shows in them
        only as the new shape, so apply compares the target with this schema first and recognises a rename
        (:meth:`~sluice.cdc.apply_schema.SchemaSteps.apply_schema`). Stamped with the wall time, so two restarts
        at one position are two events (the barrier of a partitioned table tells them apart)."""
        source = Source(
            connector="",
            name=self.side,
            position=start,
            position_text=self.position_text,
            commit_ts_us=time.time_ns() // 1000,
            origin=f"{self.sync}/{self.side}",
        )
        events: list[Event] = [
            SchemaChange(name, ref.source, RESTART, source) for name, ref in self.refs.items() if name not in self.failed
        ]
        if events:
            self._publish(ChangeBatch(events, start, self.position_text))

    def _count_invalid_dates(self, batch: ChangeBatch) -> None:
        """Count the zero or invalid dates ``batch`` turned into NULL against their tables (status, metric); a
        total without its split per table goes to the batch's table when its changes have one."""
        by_table = dict(batch.invalid_dates_by_table)
        rest = batch.invalid_dates - sum(by_table.values())
        if rest > 0:
            tables = {event.table for event in batch.events if isinstance(event, ChangeEvent)}
            if len(tables) == 1:
                table = tables.pop()
                by_table[table] = by_table.get(table, 0) + rest
        for table, count in by_table.items():
            if table in self.refs:
                self.state.invalid_dates(self.direction, table, count)

    def _publish(self, batch: ChangeBatch) -> None:
        if self.partitions > 1:
            self._publish_partitioned(batch)
            return
        by_topic: dict[str, list[tuple[str | None, bytes]]] = {}
        control: list[tuple[str | None, bytes]] = []
        counts: Counter[tuple[str, str]] = Counter()
        topics: dict[str, str] = {}
        local = self.local
        for event in batch.events:
            if isinstance(event, ChangeEvent):  # the hot path: one per row change
                table = event.table
                if table not in self.refs:
                    continue
                topic = topics.get(table)
                if topic is None:
                    topic = topics[table] = change_topic(self.sync, self.side, table)
                if local is not None:
                    event = local.read(table, event)  # both ways: stamped with the version it replaced
                by_topic.setdefault(topic, []).append((key_text(event.key), encode(event)))
                counts[(table, event.op)] += 1
                continue
            if isinstance(event, SchemaChange):
                self._schema_change(event, control)  # may add a new table matching ``tables:`` to refs
                if event.table in self.refs:  # others (tables the sync leaves out) get no topic
                    by_topic.setdefault(change_topic(self.sync, self.side, event.table), []).append((event.table, encode(event)))
        batches: list[tuple[str, list[tuple[str | None, bytes]]]] = list(by_topic.items())
        if control:
            batches.append((heartbeat_topic(self.sync, self.side), control))
        if batches:
            self.bus.publish_many(batches)
        for (table, op), rows in counts.items():  # counted once published
            self.state.captured(self.direction, table, op, rows)

    def _publish_partitioned(self, batch: ChangeBatch) -> None:
        """:meth:`_publish` on topics of several partitions: each message to the partition
        :func:`~sluice.cdc.partitions.route` picks, table-wide events to every partition."""
        count = self.partitions
        out: dict[tuple[str, int], list[tuple[str | None, bytes]]] = {}
        control: list[tuple[str | None, bytes]] = []
        counts: Counter[tuple[str, str]] = Counter()
        topics: dict[str, str] = {}
        local = self.local
        for event in batch.events:
            if isinstance(event, ChangeEvent):
                table = event.table
                ref = self.refs.get(table)
                if ref is None:
                    continue
                topic = topics.get(table)
                if topic is None:
                    topic = topics[table] = change_topic(self.sync, self.side, table)
                if local is not None:
                    event = local.read(table, event)  # both ways: stamped with the version it replaced
                if event.op == "t":
                    value = encode(event)
                    for p in range(count):
                        out.setdefault((topic, p), []).append((table, value))
                else:
                    for p, key, part in route(event, key_text(event.key), ref.source.key, count):
                        out.setdefault((topic, p), []).append((key, encode(part)))
                counts[(table, event.op)] += 1
                continue
            if isinstance(event, SchemaChange):
                self._schema_change(event, control)
                if event.table in self.refs:
                    topic, value = change_topic(self.sync, self.side, event.table), encode(event)
                    for p in range(count):
                        out.setdefault((topic, p), []).append((event.table, value))
        batches = [(topic, p, messages) for (topic, p), messages in out.items()]
        if control:
            batches.append((heartbeat_topic(self.sync, self.side), 0, control))
        if batches:
            self.bus.publish_partitions(batches)
        for (table, op), rows in counts.items():
            self.state.captured(self.direction, table, op, rows)

    def _schema_change(self, event: SchemaChange, control: list[tuple[str | None, bytes]]) -> None:
        """A new table matching ``tables:`` joins the sync; a known one gets its new schema.

        The new table is announced on the side's heartbeat topic (``control``): an apply in this process knows it
        already (:meth:`ApplyDirection.add`); one in another process or on another machine learns it there
        (:meth:`ApplyDirection.discover`), creates the target table and applies its topic from the start."""
        name = event.table
        ref = self.refs.get(name)
        if ref is not None:
            self.refs[name] = dataclasses.replace(ref, source=event.schema)
            return
        ref = announced_ref(self.settings, event, self.target_namespace)
        if ref is None:
            return
        ensure_partitions(self.bus, change_topic(self.sync, self.side, name), self.partitions, self.sync)
        self.refs[name] = ref
        self.state.table(self.direction, name, ref.target_qualified)
        self.state.set_state(self.direction, name, "streaming")
        if self.applier is not None:
            if self.control is not None:
                self.control.prepare([ref])
            self.applier.add(ref)
        control.append((name, encode(event)))

    def _checkpoint(self, idle: bool = False, force: bool = False, commit_ts_us: int = 0) -> None:
        """Publish a heartbeat at the current position (the checkpoint) and let the source free its log."""
        now = time.monotonic()
        due = now - self._last_checkpoint >= CHECKPOINT_EVERY_S and not idle
        beat = idle and now - self._last_heartbeat >= idle_heartbeat_s(self.settings.heartbeat_s)
        if self.position is None or not (force or due or beat):
            return
        source = Source(
            connector="",
            name=self.side,
            position=self.position,
            position_text=self.position_text,
            commit_ts_us=commit_ts_us or time.time_ns() // 1000,
            origin=f"{self.sync}/{self.side}",
        )
        write_heartbeat(self.bus, self.sync, self.side, Heartbeat(source))
        self.state.vouch(self.direction, source.commit_ts_us, silent_after_s(self.settings.heartbeat_s))
        self.capture.acknowledge(self.position)
        self._last_checkpoint = self._last_heartbeat = now

    # ----- resync ------------------------------------------------------------------------------------

    def _handle_resyncs(self) -> bool:
        """Reset and snapshot again the tables ``sluice sync resync`` asked for; True when any was."""
        if self.work_dir is None:
            return False
        handled_any = False
        listed: dict[str, TableSchema] | None = None
        for name in resync_requests(self.work_dir, self.sync):
            ref = self.refs.get(name)
            if ref is None:
                known = self.sync_tables() if self.sync_tables is not None else set(self.refs)
                if name not in known:
                    log.warning(
                        "sync %s: resync of %s dropped: the sync has no such table; run 'sluice sync resync PATH TABLE' "
                        "with one of %s",
                        self.sync,
                        name,
                        ", ".join(sorted(known)),
                    )
                    (resync_dir(self.work_dir, self.sync) / name).unlink(missing_ok=True)
                continue
            with handled(self.work_dir, self.sync, name):
                if listed is None:  # one catalog read for every request
                    listed = {t.qualified: t for t in self.capture.list_tables()}
                fresh = listed.get(name, ref.source)
                ref = dataclasses.replace(ref, source=fresh)
                self.refs[name] = ref
                position, text = self.capture.current_position()
                if self.progress is None:
                    self.progress = SnapshotProgress(position, text)
                self.progress.tables[name] = TableProgress(position=position, position_text=text)
                write_progress(self.bus, self.sync, self.side, self.progress)  # not done: apply keeps "snapshotting"
                self._reset_targets([ref])
                if name not in self.failed:
                    self._snapshot_table(ref, self.progress)
                handled_any = True
        return handled_any


def without_hint(message: str) -> str:
    """A plugin's :class:`PositionLost` message without its own ``--resnapshot`` advice (the runtime gives
    the full command once)."""
    at = message.find("run `sluice sync PATH --resnapshot`")
    return message[:at].rstrip(" :;,") if at > 0 else message
