"""Passes of a project's syncs for the sync mutations (``api.sync_mutations``, :mod:`sluice.api.sync_fields`).

:class:`SyncPasses` answers one call in one of two ways:

- **hosted**: the server runs the sync itself (``sluice serve --sync NAME``; found with
  :func:`sluice.cdc.runtime.hosted_runtime`). No second runtime is started: the call reads each source's
  position now (with a capture of its own), then waits until the running sync has captured past it and
  applied everything (:meth:`SyncRuntime.caught_up`), and answers the rows applied meanwhile (the difference
  of the status counts before and after) with each table's position and lag.
- **pass**: nothing runs the sync in this process. The call runs one pass in a worker thread, as
  ``sluice sync PATH --name NAME --once`` does (snapshot if needed, apply what the source holds now, stop),
  on the project's bus, writing the same status file. When another process has written a fresh status for
  the sync (``sluice sync`` runs it), the call is refused with 409 ``sync-running-elsewhere`` rather than
  fighting it for the replication slot or binlog position.

A resync (the field's ``resync: true``) writes the same requests as ``sluice sync resync PATH TABLE``
(:func:`sluice.cdc.state.request_resync`); the capture copies those tables again (in the pass, or within a
second in the hosted sync) before the call waits for the changes.

At most ``timeout_s`` seconds per call: then the answer has ``state: timeout`` (a pass is asked to stop, and
keeps its positions: the next pass resumes; a hosted sync simply goes on). Calls for one sync run one at a
time (a second waits for the first, within its own time-out, else 409 ``sync-busy``). ``error`` carries the
sync's own message, the one ``GET /syncs/{name}`` shows on the same server.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.api.gate import DataApiError
from sluice.api.sync_fields import COUNTS
from sluice.cdc.base import TableRef
from sluice.cdc.runtime import SyncRuntime, hosted_runtime
from sluice.cdc.state import request_resync, resync_requests
from sluice.cdc.status import SyncStatus, read_status
from sluice.errors import SluiceError
from sluice.project.model import Project

log = logging.getLogger("sluice.api")
POLL_S = 0.05
STOP_WAIT_S = 30.0
"""After a time-out, how long a pass is given to stop (it checkpoints) before the call answers anyway."""
FRESH_STATUS_S = 10.0
"""A status file younger than this, of a running sync of another process, means that process runs it."""


def _counts(applied: dict[str, int], before: dict[str, int] | None = None) -> dict[str, int]:
    out = {op: applied.get(op, 0) - (before or {}).get(op, 0) for op in COUNTS}
    out["total"] = sum(out.values())
    return out


def answer(
    sync: str,
    mode: str,
    state: str,
    error: str | None,
    started: float,
    resynced: list[str],
    after: SyncStatus | None,
    before: SyncStatus | None = None,
) -> dict[str, Any]:
    """The ``SyncPass`` value: per table the rows applied between ``before`` and ``after`` (all of ``after``'s
    counts without ``before``), its state, position and lag."""
    earlier = {(t.direction, t.source_table): t.applied for t in before.tables} if before is not None else {}
    tables: list[dict[str, Any]] = []
    applied: list[dict[str, int]] = []
    for t in after.tables if after is not None else []:
        applied.append(_counts(t.applied, earlier.get((t.direction, t.source_table))))
        tables.append(
            {
                "source_table": t.source_table,
                "target_table": t.target_table,
                "direction": t.direction,
                "state": t.state,
                "error": t.error or None,
                "position": t.position or None,
                "lag_s": t.lag_s,
                "applied": applied[-1],
            }
        )
    total = {op: sum(counts[op] for counts in applied) for op in (*COUNTS, "total")}
    return {
        "sync": sync,
        "mode": mode,
        "state": state,
        "error": error,
        "seconds": round(time.monotonic() - started, 3),
        "resynced": resynced,
        "applied": total,
        "tables": tables,
    }


def resolve_tables(refs: list[TableRef], wanted: list[str] | None) -> list[str]:
    """The source tables (``schema.name``) of ``refs`` that ``wanted`` names (by ``schema.name`` or ``name``;
    None: all). Raises :class:`DataApiError` 400 ``unknown-table`` for a name that is none of them."""
    known = [ref.source.qualified for ref in refs]
    if wanted is None:
        return known
    chosen: list[str] = []
    for name in wanted:
        found = [q for q in known if q == name or q.rpartition(".")[2] == name]
        if len(found) != 1:
            raise DataApiError(
                f"'{name}' is not one table of the sync (tables: {', '.join(known) or 'none yet'})", code="unknown-table"
            )
        chosen.append(found[0])
    return list(dict.fromkeys(chosen))


@dataclass
class _Pass:
    """A ``--once`` pass running in a worker thread."""

    runtime: SyncRuntime
    resync: list[str] | None
    final: SyncStatus | None = None
    failure: BaseException | None = None
    resynced: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class SyncPasses:
    """The :class:`~sluice.api.sync_fields.SyncRunner` of ``sluice serve``: passes of ``project``'s syncs."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, sync: str, resync: bool, tables: list[str] | None, timeout_s: float) -> dict[str, Any]:
        """One pass of ``sync`` (see the module); raises :class:`DataApiError` 400 (unknown table) or 409 (busy,
        or run by another process)."""
        started = time.monotonic()
        with self._guard:
            lock = self._locks.setdefault(sync, threading.Lock())
        if not lock.acquire(timeout=timeout_s):
            raise DataApiError(f"a pass of sync '{sync}' is still running; try again", status=409, code="sync-busy")
        try:
            runtime = hosted_runtime(self.project.work_dir, sync)
            wanted = tables if resync else None
            if runtime is not None:
                return self._hosted(runtime, sync, resync, wanted, started, started + timeout_s)
            return self._pass(sync, resync, wanted, started, started + timeout_s)
        except DataApiError:
            raise
        except SluiceError as exc:  # the sync cannot start (its bus, a plugin): an answer, not a server error
            return answer(sync, "pass", "error", str(exc), started, [], None)
        finally:
            lock.release()

    # ----- the server hosts the sync ---------------------------------------------------------------------

    def _hosted(
        self, runtime: SyncRuntime, sync: str, resync: bool, wanted: list[str] | None, started: float, deadline: float
    ) -> dict[str, Any]:
        while not runtime.directions or any(d.capture is None for d in runtime.directions):
            if runtime.state.stop.is_set() or time.monotonic() >= deadline:
                state = "error" if runtime.state.stop.is_set() else "timeout"
                error = runtime.state.status.error or ("the hosted sync stopped" if state == "error" else None)
                return answer(sync, "hosted", state, error, started, [], runtime.state.snapshot_status())
            time.sleep(POLL_S)
        before = runtime.state.snapshot_status()
        try:
            positions = runtime.source_positions()
        except SluiceError as exc:
            return answer(sync, "hosted", "error", str(exc), started, [], before, before)
        resynced: list[str] = []
        if resync:
            resynced = resolve_tables(runtime.directions[0].refs, wanted)
            for table in resynced:
                request_resync(self.project.work_dir, sync, table)
        state, error = "done", None
        while True:
            pending = set(resync_requests(self.project.work_dir, sync)) & set(resynced)
            if not pending and runtime.caught_up(positions):
                break
            if runtime.state.stop.is_set():
                state, error = "error", runtime.state.status.error or "the hosted sync stopped"
                break
            if time.monotonic() >= deadline:
                state = "timeout"
                break
            time.sleep(POLL_S)
        return answer(sync, "hosted", state, error, started, resynced, runtime.state.snapshot_status(), before)

    # ----- a pass of our own -----------------------------------------------------------------------------

    def _pass(self, sync: str, resync: bool, wanted: list[str] | None, started: float, deadline: float) -> dict[str, Any]:
        from sluice.bus.registry import open_bus

        spec = self.project.sync(sync)
        self._refuse_if_running_elsewhere(sync)
        bus = open_bus(self.project.resolve_bus_url(), self.project.root)
        try:
            runtime = SyncRuntime(spec.settings, dict(spec.urls), bus, self.project.work_dir, once=True)
        except BaseException:
            bus.close()
            raise
        work = _Pass(runtime, wanted if resync else None)
        if resync and wanted is None:
            work.resync = []  # every table: resolved once the runtime knows them
        thread = threading.Thread(target=self._work, args=(work, bus), name=f"sync-pass-{sync}", daemon=True)
        thread.start()
        finished = work.done.wait(max(0.0, deadline - time.monotonic()))
        if not finished:
            runtime.stop()
            work.done.wait(STOP_WAIT_S)
        if isinstance(work.failure, DataApiError):
            raise work.failure
        after = work.final or runtime.state.snapshot_status()
        if not finished:
            return answer(sync, "pass", "timeout", None, started, work.resynced, after)
        if work.failure is not None:
            return answer(sync, "pass", "error", str(work.failure), started, work.resynced, after)
        failed = [t for t in after.tables if t.state == "error"]
        if failed:
            return answer(
                sync, "pass", "error", f"table {failed[0].source_table} stopped: {failed[0].error}", started, work.resynced, after
            )
        return answer(sync, "pass", "done", None, started, work.resynced, after)

    def _work(self, work: _Pass, bus: Any) -> None:
        runtime = work.runtime
        try:
            if work.resync is not None:
                problems = runtime.preflight()
                if problems:
                    runtime.close()  # what the preflight opened: no run follows
                    raise runtime.refusal(problems)
                names = None if not work.resync else work.resync
                work.resynced = resolve_tables(runtime.directions[0].refs, names)
                for table in work.resynced:
                    request_resync(self.project.work_dir, runtime.settings.name, table)
            work.final = runtime.run()
        except BaseException as exc:  # reported in the answer; a pass must not kill the server's thread pool
            if not isinstance(exc, SluiceError):
                log.exception("sync pass of %s failed", runtime.settings.name)
            work.failure = exc
        finally:
            try:
                bus.close()
            finally:
                work.done.set()

    def _refuse_if_running_elsewhere(self, sync: str) -> None:
        status = read_status(self.project.work_dir, sync)
        if status is None or status.pid in (0, os.getpid()) or status.state in ("stopped", "error"):
            return
        if time.time() - status.updated_at < FRESH_STATUS_S:
            raise DataApiError(
                f"sync '{sync}' runs in process {status.pid}; stop it or serve it with `sluice serve --sync {sync}`",
                status=409,
                code="sync-running-elsewhere",
            )
