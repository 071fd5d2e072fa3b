"""One running sync: capture -> bus -> apply for one or both directions, its status file and its stop.

:class:`SyncRuntime` builds, per direction ``source side -> target side``, a :class:`~sluice.cdc.capture_loop.CaptureSide`
(one thread) and an :class:`~sluice.cdc.apply_loop.ApplyDirection` (worker threads); ``roles`` limits the
process to capture or to apply (separate processes over Kafka). Plugins come from the registry by URL scheme
(:mod:`sluice.cdc.plugins`); tests pass factories instead.

Both ways (``direction: both``): two directions; the capture of each side is given the positions table of the
apply that writes into that side as ``marker_table``, so the sync's own writes are not captured back; the
reverse tables are the forward tables' targets (created by the forward apply first); only the declared
``source`` side is snapshotted, the other side streams from its position at the first start. Conflicts go
to the resolver of :mod:`sluice.cdc.conflicts`. A copy of the declared source over the target (``--resnapshot``,
a resync, ``snapshot: when_needed``) tells the other direction through :mod:`sluice.cdc.reverse`, so no change the
target had before it reaches the source afterwards; with ``--resnapshot`` the target side's capture starts at the
target's position read at start.

``partitions: N`` (> 1) needs a bus with partitions (Kafka; :func:`partitions_problem` says why not otherwise):
each table's topic gets N partitions and apply runs its keys in parallel (:mod:`sluice.cdc.partitions`).
Several processes may then run ``--role apply`` for one direction: the consumer group spreads the
partitions over them, each writes its own status file (:func:`status_suffix`).

``once``: each capture stops at the source's end position read at start (:meth:`Capture.end_position`, past
every change committed before the run; after a snapshot when one is needed); the run ends when apply has
drained the bus. ``snapshot: initial_only`` ends the same way right after the snapshot: the capture of the
declared source stops once its tables are published (both ways, the other side's capture stops at its end
position read at start, as with ``once``), and the run ends when apply has drained the bus; an apply-only
process (``--role apply``) also waits until the bus's snapshot progress records every table of the direction
published. Stop (SIGINT/SIGTERM -> :meth:`SyncRuntime.stop`): captures checkpoint where they are, apply
finishes its current batch; nothing is lost, the next start resumes.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from sluice.bus.base import Bus
from sluice.cdc.apply_loop import ApplyDirection
from sluice.cdc.base import Apply, Capture, SyncError, TableRef
from sluice.cdc.capture_lock import CaptureLock
from sluice.cdc.capture_loop import CaptureSide, SnapshotProgressHook
from sluice.cdc.checkpoint import read_progress
from sluice.cdc.config import SyncSettings, partitions_problem
from sluice.cdc.conflicts import ConflictLog, ConflictResolver, LocalVersions
from sluice.cdc.events import Position, TableSchema, heartbeat_topic
from sluice.cdc.plugins import ApplyOptions
from sluice.cdc.reverse import ReverseReset
from sluice.cdc.state import SyncState, direction_label
from sluice.cdc.status import SyncStatus, forget_dead_applies, status_dir, write_status
from sluice.cdc.tables import announced_ref, capture_problems, located, reverse_ref
from sluice.errors import ConfigError, SluiceError, ValidationFailed
from sluice.plugins import Settings, registry
from sluice.plugins.options import convert_options
from sluice.project.model import Origin, Project
from sluice.urls import connection_scheme

log = logging.getLogger("sluice.cdc")

CaptureFactory = Callable[[str, Settings, str, str, "str | None"], Capture]
ApplyFactory = Callable[[str, Settings, str, str], Apply]
STATUS_EVERY_S = 1.0


def plugin_capture(url: str, options: Settings, sync: str, side: str, marker_table: str | None) -> Capture:
    """The capture plugin of ``url``'s scheme, built with the constructor convention of :mod:`sluice.cdc.base`."""
    plugin = registry().for_scheme("capture", connection_scheme(url), "a sync's source")
    return cast(Capture, plugin.load()(url, options, sync, side, marker_table))


def plugin_apply(url: str, options: Settings, sync: str, side: str) -> Apply:
    """The apply plugin of ``url``'s scheme."""
    plugin = registry().for_scheme("apply", connection_scheme(url), "a sync's target")
    return cast(Apply, plugin.load()(url, options, sync, side))


def plugin_options(kind: str, url: str, raw: dict[str, Any], label: str) -> Settings:
    """``raw`` checked against the options of ``url``'s ``kind`` plugin; ConfigError when they do not fit."""
    plugin = registry().for_scheme(kind, connection_scheme(url), label)  # type: ignore[arg-type]
    options, problems = convert_options(plugin.options, raw, label=label, file=None)
    if options is None:
        raise ConfigError("; ".join(p.message for p in problems))
    return options


@dataclass
class Direction:
    """One way of a sync: its tables, capture and apply."""

    source_side: str
    target_side: str
    refs: list[TableRef]
    target_namespace: str
    label: str = ""
    capture: CaptureSide | None = None
    applier: ApplyDirection | None = None
    resources: list[Any] = field(default_factory=list)


class SyncRuntime:
    """Runs one sync of a project until stopped, or until drained with ``once``."""

    def __init__(
        self,
        settings: SyncSettings,
        urls: dict[str, str],
        bus: Bus,
        work_dir: Path,
        *,
        roles: Sequence[str] = ("capture", "apply"),
        once: bool = False,
        resnapshot: bool = False,
        workers: int = 4,
        capture_factory: CaptureFactory = plugin_capture,
        apply_factory: ApplyFactory = plugin_apply,
        on_progress: SnapshotProgressHook | None = None,
        capture_running: Callable[[], bool] | None = None,
        origin: Origin | None = None,
    ) -> None:
        problem = partitions_problem(settings, bus.partitioned)
        if problem:
            raise ConfigError(problem)
        self.settings, self.urls, self.bus, self.work_dir = settings, urls, bus, work_dir
        self.roles = set(roles)
        self.once, self.resnapshot, self.workers = once, resnapshot, workers
        self.snapshot_only = settings.snapshot == "initial_only"
        """``snapshot: initial_only``: the run ends once the snapshot is applied (:meth:`_finished`)."""
        self.capture_factory, self.apply_factory = capture_factory, apply_factory
        self.on_progress = on_progress
        self.capture_running = capture_running
        """With capture in another process (``sluice sync --processes 2``): True while it still runs; ``once``
        then waits for it before draining."""
        self.origin = origin
        """Where the sync is written (its :class:`~sluice.project.model.SyncSpec`'s): :meth:`preflight` places each
        problem at the line of the entry at fault; None (a runtime built from settings alone): plain messages."""
        self.notes: list[ConfigError] = []
        """What :meth:`preflight` found worth a note without stopping the sync (an ``exclude:`` entry that leaves
        nothing out), placed like its problems."""
        sides = [(settings.source, settings.target)]
        if settings.direction == "both":
            sides.append((settings.target, settings.source))
        role_names = [f"{r}:{s if r == 'capture' else t}" for s, t in sides for r in ("capture", "apply") if r in self.roles]
        self.state = SyncState(settings.name, settings.source, settings.target, settings.direction, role_names)
        self.sides = sides
        self.directions: list[Direction] = []
        self.conflicts = ConflictLog(status_dir(work_dir) / f"{settings.name}.conflicts.jsonl")
        self._captures: dict[str, Capture] = {}
        self._announced_from: dict[str, int] = {}
        """Per captured side, the end of its heartbeat topic before its tables were listed (:meth:`preflight`)."""
        self._closers: list[Callable[[], None]] = []
        self.apply_options = msgspec.convert(settings.apply, ApplyOptions) if settings.apply else ApplyOptions()

    # ----- building ----------------------------------------------------------------------------------

    def _capture_options(self, side: str) -> Settings:
        url = self.urls[side]
        raw = dict(self.settings.capture) if side == self.settings.source else {}
        options = plugin_options("capture", url, raw, f"sync '{self.settings.name}': capture")
        if self.settings.direction == "both" and "replica_identity_full" in options.__struct_fields__:
            options = msgspec.structs.replace(options, replica_identity_full=True)
        return options

    def capture_of(self, side: str) -> Capture:
        """The (one) capture reading ``side``, built on first use."""
        capture = self._captures.get(side)
        if capture is None:
            marker = f"{self.apply_options.namespace}.positions" if self.settings.direction == "both" else None
            capture = self.capture_factory(self.urls[side], self._capture_options(side), self.settings.name, side, marker)
            self._captures[side] = capture
            self._closers.append(capture.close)
        return capture

    def make_apply(self, side: str) -> Apply:
        return self.apply_factory(self.urls[side], self.apply_options, self.settings.name, side)

    def preflight(self) -> list[ConfigError]:
        """Problems found against the live databases (:func:`~sluice.cdc.tables.capture_problems`, the checks of
        ``sluice validate --live``), each at the line of the entry at fault when the runtime has an :attr:`origin`;
        resolves the tables and sets :attr:`notes`. A run after it does not check again; :meth:`close` closes what
        it opened when no run follows."""
        settings = self.settings
        # Before the tables are listed: a table capture announces later is read there (ApplyDirection.discover).
        self._announced_from = {side: self.bus.end_offset(heartbeat_topic(settings.name, side)) for side, _ in self.sides}
        forward = capture_problems(settings, self.urls, settings.source, self.capture_of(settings.source))
        self.directions = [Direction(settings.source, settings.target, forward.refs, forward.namespace)]
        problems = forward.problems
        if settings.direction == "both":
            problems += capture_problems(settings, self.urls, settings.target, self.capture_of(settings.target)).problems
        self.notes = located(forward.notes, self.origin)
        return located(problems, self.origin)

    def refusal(self, problems: list[ConfigError]) -> SluiceError:
        """The error that stops the sync on :meth:`preflight`'s ``problems``: with an :attr:`origin`, a
        :class:`~sluice.errors.ValidationFailed` listing each at its line as ``sluice validate --live`` does; without
        one, a :class:`SyncError` joining their messages."""
        if self.origin is None:
            return SyncError("; ".join(problem.message for problem in problems))
        return ValidationFailed(problems)

    def _reverse(self) -> Direction:
        """The target -> source direction, over the forward direction's target tables (created if missing)."""
        forward = self.directions[0]
        control = self.make_apply(forward.target_side)
        try:
            control.prepare(forward.refs)
        finally:
            control.close()
        found: dict[str, TableSchema] = {t.qualified: t for t in self.capture_of(forward.target_side).list_tables()}
        refs = []
        for ref in forward.refs:
            table = found.get(ref.target_qualified)
            if table is None:
                raise SyncError(
                    f"sync '{self.settings.name}': table {ref.target_qualified} is missing in {forward.target_side}; "
                    "create it (or let apply create it: apply: {create_tables: true})"
                )
            refs.append(reverse_ref(ref, table))
        namespace = forward.refs[0].source.namespace if forward.refs else "public"
        return Direction(forward.target_side, forward.source_side, refs, namespace)

    def _build(self) -> None:
        if not self.directions:
            problems = self.preflight()
            if problems:
                raise self.refusal(problems)
        if self.settings.direction == "both" and len(self.directions) == 1:
            self.directions.append(self._reverse())
        until: dict[str, Position] = {}
        starts = {}
        for d in self.directions:
            if "capture" in self.roles:
                capture = self.capture_of(d.source_side)
                capture.prepare([ref.source for ref in d.refs])  # REPLICA IDENTITY FULL before the first position
                starts[d.source_side] = capture.current_position()
                if self.once or self.snapshot_only:
                    # Not the start position: one past every change committed before the run (PostgreSQL's
                    # written WAL position can be behind a commit that returned, Capture.end_position).
                    until[d.source_side] = capture.end_position()[0]
        local = {d.source_side: LocalVersions() for d in self.directions} if self.settings.direction == "both" else {}
        for d in self.directions:
            d.label = direction_label(d.source_side, d.target_side)
            if "apply" in self.roles:
                resolver = None
                if self.settings.direction == "both":
                    targets = {ref.source.qualified: ref.target_qualified for ref in d.refs}
                    resolver = ConflictResolver(
                        self.settings.conflicts,
                        d.source_side == self.settings.source,
                        _mapper(targets),
                        local.get(d.target_side),
                        self.conflicts,
                        d.label,
                    )
                control = self.make_apply(d.target_side)
                self._closers.append(control.close)
                control.prepare(d.refs)
                d.applier = ApplyDirection(
                    self.settings.name,
                    d.source_side,
                    d.target_side,
                    d.refs,
                    self.bus,
                    functools.partial(self.make_apply, d.target_side),
                    self.state,
                    d.label,
                    self.settings.batch_rows,
                    resolver,
                    self.workers,
                    self.settings.partitions,
                    functools.partial(announced_ref, self.settings, target_namespace=d.target_namespace),
                    self._announced_from.get(d.source_side, 0),
                    self.settings.heartbeat_s,
                )
                d.resources.append(control)
        reverse = self._reverse_reset()
        for d in self.directions:
            if "capture" in self.roles:
                control_apply = d.resources[0] if d.resources else None
                both = self.settings.direction == "both"
                declared = d.source_side == self.settings.source
                d.capture = CaptureSide(
                    self.settings,
                    d.source_side,
                    self.capture_of(d.source_side),
                    self.bus,
                    d.refs,
                    self.state,
                    d.label,
                    target_namespace=d.target_namespace,
                    control=control_apply,
                    applier=d.applier,
                    local=local.get(d.source_side),
                    snapshot_mode=self.settings.snapshot if not both or declared else "never",
                    resnapshot=self.resnapshot and declared,
                    until=until.get(d.source_side),
                    start_position=starts.get(d.source_side),
                    work_dir=self.work_dir,
                    on_progress=self.on_progress,
                    sync_tables=self._captured_tables,
                    reverse=reverse if declared else None,
                    restart=both and self.resnapshot and not declared,
                )
        if reverse is not None:
            forward, backward = self.directions
            reverse.capture = backward.capture
            reverse.reverse_apply = backward.applier
            if self.settings.partitions > 1:
                reverse.forward_apply = forward.applier
            if backward.applier is not None:
                backward.applier.hold = reverse.hold

    def _reverse_reset(self) -> ReverseReset | None:
        """Both ways, with the declared source captured here: what its copies over the target tell the other
        direction (:mod:`sluice.cdc.reverse`)."""
        if self.settings.direction != "both" or "capture" not in self.roles:
            return None
        source, target = self.settings.source, self.settings.target
        backward = self.directions[1]

        def end_position() -> tuple[Position, str]:
            capture = self.capture_factory(self.urls[target], self._capture_options(target), self.settings.name, target, None)
            try:
                return capture.end_position()
            finally:
                capture.close()

        def reverse_refs() -> dict[str, TableRef]:
            refs = {ref.source.qualified: ref for ref in backward.refs}
            if backward.capture is not None:
                refs.update(backward.capture.refs)
            return refs

        return ReverseReset(
            self.settings.name,
            end_position,
            functools.partial(self.make_apply, source),
            reverse_refs,
            self.settings.partitions,
            self.state.stop,
        )

    def _captured_tables(self) -> set[str]:
        """The source tables of every capture in this process (a resync request names one of them)."""
        return {name for d in self.directions if d.capture is not None for name in list(d.capture.refs)}

    # ----- running -----------------------------------------------------------------------------------

    def run(self) -> SyncStatus:
        """Run until :meth:`stop` (or drained with ``once``); returns the final status. Raises the first failure;
        :class:`~sluice.cdc.capture_lock.CaptureRunning` before anything starts when another process captures
        one of this process's sides, and :meth:`refusal` before anything starts when :meth:`preflight` (run here
        unless it ran before) finds problems."""
        try:
            locks = self._lock_captures()
        except BaseException:
            self.close()  # what a preflight before run opened
            raise
        try:
            if "." in status_suffix(self.roles, self.settings.partitions):
                forget_dead_applies(self.work_dir, self.settings.name)
            self._build()
            threads = []
            for d in self.directions:
                if d.applier is not None:
                    d.applier.start()
                if d.capture is not None:
                    thread = threading.Thread(target=d.capture.run, name=f"capture-{d.source_side}", daemon=True)
                    thread.start()
                    threads.append(thread)
            next_status = 0.0
            while not self.state.stop.is_set():
                if time.monotonic() >= next_status:
                    self.write_status()
                    next_status = time.monotonic() + STATUS_EVERY_S
                if self._finished():
                    break
                self.state.stop.wait(0.05)
            self.state.stop.set()
            for thread in threads:
                thread.join(30)
            for d in self.directions:
                if d.applier is not None:
                    d.applier.join(30)
        finally:
            self.state.stop.set()
            self.close()
            for lock in locks:
                lock.release()
        with self.state.lock:
            if self.state.status.state != "error":
                self.state.status.state = "stopped"
        final = self.write_status()
        if self.state.failure is not None:
            raise self.state.failure
        return final

    def _lock_captures(self) -> list[CaptureLock]:
        """The capture lock of each side this process captures (:mod:`sluice.cdc.capture_lock`), all taken or none."""
        locks: list[CaptureLock] = []
        if "capture" not in self.roles:
            return locks
        try:
            for side in dict.fromkeys(s for s, _ in self.sides):
                lock = CaptureLock(self.work_dir, self.settings.name, side)
                lock.acquire()
                locks.append(lock)
        except BaseException:
            for lock in locks:
                lock.release()
            raise
        return locks

    def _finished(self) -> bool:
        """``once`` or ``snapshot: initial_only``: every capture reached its end (its end position, the end of
        its snapshot) and every apply drained the bus; ``initial_only`` in an apply-only process without a
        capture child: after the snapshot progress on the bus says every table of the direction is published."""
        capture_elsewhere = self.capture_running is not None and self.capture_running()  # also notices its end
        if not (self.once or self.snapshot_only) or capture_elsewhere:
            return False
        for d in self.directions:
            if d.capture is not None and not d.capture.finished:
                return False
        if not all(d.applier is None or d.applier.drained() for d in self.directions):
            return False
        if self.once or self.capture_running is not None:
            return True
        # Progress first, then drained again: the rows a finished snapshot published are all on the bus by then.
        waiting = [d for d in self.directions if d.capture is None and d.applier is not None]
        return all(self._snapshot_published(d) for d in waiting) and all(
            d.applier is None or d.applier.drained() for d in waiting
        )

    def _snapshot_published(self, d: Direction) -> bool:
        """Capture (in another process) published the snapshot of every table of ``d``: the direction of the
        declared source (the other one of a both-ways sync has no snapshot), per the bus's snapshot progress."""
        if d.source_side != self.settings.source:
            return True
        progress = read_progress(self.bus, self.settings.name, d.source_side)
        if progress is None:
            return False
        return all((entry := progress.tables.get(ref.source.qualified)) is not None and entry.done for ref in d.refs)

    def stop(self) -> None:
        """Ask every thread to stop (signal handlers call this)."""
        self.state.stop.set()

    # ----- passes of a running sync (``api.sync_mutations``) -----------------------------------------

    def source_positions(self) -> dict[str, Position]:
        """Each captured side's end position now (:meth:`Capture.end_position`: past every change committed before
        the call), read by a capture of its own (not the streaming one, which belongs to its thread); ``{}`` while
        the runtime is still building its directions."""
        sides = [d.source_side for d in self.directions if d.capture is not None]
        positions: dict[str, Position] = {}
        for side in dict.fromkeys(sides):
            capture = self.capture_factory(self.urls[side], self._capture_options(side), self.settings.name, side, None)
            try:
                positions[side] = capture.end_position()[0]
            finally:
                capture.close()
        return positions

    def caught_up(self, positions: dict[str, Position]) -> bool:
        """Every change committed before ``positions`` (from :meth:`source_positions`) is applied: each
        direction's capture streamed past its side's position and its apply drained the bus."""
        if not positions or self.state.stop.is_set():
            return False
        for d in self.directions:
            wanted = positions.get(d.source_side)
            if d.capture is None or wanted is None:
                continue
            if d.capture.position is None or d.capture.position < wanted:
                return False
            if d.applier is not None and not d.applier.drained():
                return False
        return True

    def write_status(self) -> SyncStatus:
        status = self.state.snapshot_status()
        write_status(self.work_dir, status, status_suffix(self.roles, self.settings.partitions))
        return status

    def close(self) -> None:
        """Close every capture and apply opened (:meth:`run` does it as it ends)."""
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                log.debug("closing failed", exc_info=True)
        self._closers.clear()
        self._captures.clear()

    def drop(self) -> None:
        """Remove what the captures created on the sources (slots, publications)."""
        try:
            for side in {s for s, _ in self.sides}:
                self.capture_of(side).drop()
        finally:
            self.close()


def status_suffix(roles: set[str], partitions: int) -> str:
    """The status file's suffix: none for capture and apply in one process, else the role; an apply-only process
    of a partitioned sync adds its pid (several may apply one direction, each writing its own file)."""
    if roles == {"capture", "apply"}:
        return ""
    suffix = "-".join(sorted(roles))
    return f"{suffix}.{os.getpid()}" if roles == {"apply"} and partitions > 1 else suffix


def _mapper(targets: dict[str, str]) -> Callable[[str], str]:
    return lambda table: targets.get(table, table)


_HOSTED: dict[tuple[Path, str], SyncRuntime] = {}
_HOSTED_LOCK = threading.Lock()


def hosted_runtime(work_dir: Path, name: str) -> SyncRuntime | None:
    """The runtime of sync ``name`` that :func:`host_sync` runs in this process for the project whose work
    folder is ``work_dir``, or None."""
    with _HOSTED_LOCK:
        return _HOSTED.get((work_dir.resolve(), name))


def host_sync(project: Project, name: str, stop: threading.Event) -> None:
    """Run sync ``name`` of ``project`` until ``stop`` is set (``sluice serve --sync NAME`` calls this in a thread).

    Uses the project's bus and writes the sync's status file like ``sluice sync`` does; while it runs,
    :func:`hosted_runtime` finds it (``api.sync_mutations`` waits on it instead of starting a second one). Raises
    :class:`~sluice.errors.ConfigError` for an unknown name, :class:`~sluice.errors.ValidationFailed` listing each
    problem of its preflight at its line of the file (:meth:`SyncRuntime.refusal`), and the runtime's
    :class:`SyncError` when it fails.
    """
    from sluice.bus.registry import open_bus

    spec = project.sync(name)
    bus = open_bus(project.resolve_bus_url(), project.root)
    runtime = SyncRuntime(spec.settings, dict(spec.urls), bus, project.work_dir, origin=spec.origin)

    def stop_when_asked() -> None:
        stop.wait()
        runtime.stop()

    watcher = threading.Thread(target=stop_when_asked, name=f"sync-{name}-stop", daemon=True)
    watcher.start()
    key = (project.work_dir.resolve(), name)
    with _HOSTED_LOCK:
        _HOSTED[key] = runtime
    try:
        runtime.run()
    finally:
        with _HOSTED_LOCK:
            if _HOSTED.get(key) is runtime:
                del _HOSTED[key]
        bus.close()
