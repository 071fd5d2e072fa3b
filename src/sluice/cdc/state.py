"""What the threads of one running sync share: per-table status records, stop flag, resync requests.

Capture threads fill ``captured``, snapshot and invalid-date counts, apply threads ``applied``, lag, conflicts and dead
letters, both under one lock (a table whose topic has several partitions: counts summed over them, lag and
position those of its most behind partition); :meth:`SyncState.snapshot_status` copies them into a
:class:`~sluice.cdc.status.SyncStatus` for the status file (written about once a second) and metrics.

Resync requests (``sluice sync resync PATH TABLE``) are files ``<project>/.sluice/syncs/<sync>.resync/<table>``:
the command writes one; the sync's capture of that table's side handles it (now if it runs, else at its
next start) and deletes it. The command checks the name against the sync's tables when its status file knows
them (:func:`resync_name`: a short name that is one table's is completed); a request no capture of the
running sync can match is logged as a warning and deleted (:mod:`sluice.cdc.capture_loop`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sluice.cdc.events import OPERATION_NAMES
from sluice.cdc.status import SyncStatus, TableState, TableStatus, status_dir
from sluice.errors import ConfigError, did_you_mean
from sluice.observability import cdc_metrics as metrics


def direction_label(source_side: str, target_side: str) -> str:
    """``hr -> warehouse``."""
    return f"{source_side} -> {target_side}"


class SyncState:
    """The shared, lock-protected state of one sync in this process."""

    def __init__(self, name: str, source: str, target: str, direction: str, roles: list[str]) -> None:
        self.lock = threading.RLock()
        self.status = SyncStatus(name=name, source=source, target=target, direction=direction, pid=os.getpid(), roles=roles)
        self.tables: dict[tuple[str, str], TableStatus] = {}
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.last_commit_us: dict[tuple[str, str, int], int] = {}
        """Per ``(direction, table, partition)``: commit time of the last change applied."""
        self.idle: dict[tuple[str, str, int], bool] = {}
        self.positions: dict[tuple[str, str, int], str] = {}
        self.vouched: dict[str, tuple[int, float]] = {}
        """Per direction: the source time (µs since the epoch) of its capture's newest heartbeat that apply read,
        and the seconds after which a capture with no newer one counts as silent (:meth:`vouch`)."""
        self.shown_path = "PATH"
        """The project as the user named it (``sluice sync PATH``), written into the advice of the errors this
        process logs (:func:`~sluice.cdc.status.with_path`); the errors stored keep ``PATH``."""

    @property
    def name(self) -> str:
        return self.status.name

    def table(self, direction: str, source_table: str, target_table: str = "") -> TableStatus:
        """The record of ``source_table`` flowing ``direction``, created on first use."""
        with self.lock:
            record = self.tables.get((direction, source_table))
            if record is None:
                record = TableStatus(source_table=source_table, target_table=target_table, direction=direction)
                self.tables[(direction, source_table)] = record
                metrics.register_table(self.name, source_table)
            elif target_table and not record.target_table:
                record.target_table = target_table
            return record

    def set_state(self, direction: str, table: str, state: TableState, error: str = "") -> None:
        with self.lock:
            record = self.table(direction, table)
            record.state, record.error = state, error
            metrics.TABLE_STOPPED.labels(self.name, table).set(1 if state == "error" else 0)

    def captured(self, direction: str, table: str, op: str, rows: int = 1) -> None:
        name = OPERATION_NAMES.get(op, op)
        with self.lock:
            record = self.table(direction, table)
            record.captured[name] = record.captured.get(name, 0) + rows
        metrics.CAPTURED.labels(self.name, table, name).inc(rows)

    def invalid_dates(self, direction: str, table: str, count: int) -> None:
        """Count ``count`` zero or invalid dates of ``table`` that capture turned into NULL."""
        if count <= 0:
            return
        with self.lock:
            self.table(direction, table).invalid_dates += count
        metrics.INVALID_DATES.labels(self.name, table).inc(count)

    def snapshot_rows(self, direction: str, table: str, rows: int, total: int | None) -> None:
        with self.lock:
            record = self.table(direction, table)
            record.snapshot_rows += rows
            if total is not None and record.snapshot_total is None:
                record.snapshot_total = total
            ratio = min(1.0, record.snapshot_rows / record.snapshot_total) if record.snapshot_total else 0.0
        metrics.SNAPSHOT_ROWS.labels(self.name, table).inc(rows)
        metrics.SNAPSHOT_PROGRESS.labels(self.name, table).set(ratio)

    def snapshot_done(self, direction: str, table: str) -> None:
        with self.lock:
            self.table(direction, table).snapshot_done = True
        metrics.SNAPSHOT_PROGRESS.labels(self.name, table).set(1.0)

    def stopped(self, direction: str, table: str) -> bool:
        """Whether ``table`` flowing ``direction`` is stopped by an error in this process (state ``error``)."""
        with self.lock:
            record = self.tables.get((direction, table))
            return record is not None and record.state == "error"

    def applied(
        self,
        direction: str,
        table: str,
        counts: dict[str, int],
        conflicts: int,
        dead: int,
        position: str,
        commit_us: int,
        partition: int = 0,
    ) -> None:
        """Count one applied batch of ``table`` (from ``partition`` of its topic); ``commit_us``: source commit
        time of its last change (0 for snapshot rows)."""
        with self.lock:
            record = self.table(direction, table)
            for op, rows in counts.items():
                name = OPERATION_NAMES.get(op, op)
                record.applied[name] = record.applied.get(name, 0) + rows
                metrics.APPLIED.labels(self.name, table, name).inc(rows)
            record.conflicts += conflicts
            record.dead_letters += dead
            key = (direction, table, partition)
            if position:
                self.positions[key] = position
                record.position = position
            if commit_us:
                self.last_commit_us[key] = commit_us
            self.idle[key] = False
        if conflicts:
            metrics.CONFLICTS.labels(self.name, table).inc(conflicts)
        if dead:
            metrics.DEAD_LETTERS.labels(self.name, table).inc(dead)

    def show_stored_position(self, direction: str, table: str, position: str) -> None:
        """The position an earlier run of apply stored for ``table`` (as the source shows it; "" when none): shown
        until this run applies a change of its own."""
        if not position:
            return
        with self.lock:
            record = self.table(direction, table)
            if not record.position:
                record.position = position

    def mark_idle(self, direction: str, table: str, partition: int = 0) -> None:
        """``partition`` of ``table``'s topic had nothing left to apply: its lag is 0."""
        with self.lock:
            self.idle[(direction, table, partition)] = True

    def vouch(self, direction: str, heartbeat_us: int, silent_after_s: float) -> None:
        """The capture of ``direction`` published a heartbeat at source time ``heartbeat_us`` (µs since the epoch):
        its tables with nothing left to apply are caught up to then. Once it is older than ``silent_after_s``
        seconds, their lag is its age (seconds), not 0: :meth:`snapshot_status`."""
        with self.lock:
            known = self.vouched.get(direction)
            if known is None or heartbeat_us >= known[0]:
                self.vouched[direction] = (heartbeat_us, silent_after_s)

    def _idle_lag(self, direction: str, now_us: int) -> float:
        """Seconds an idle, streaming table of ``direction`` is behind its source: 0 while its capture's
        heartbeats are recent, their age once the capture has been silent too long (or 0 before any was read)."""
        vouched = self.vouched.get(direction)
        if vouched is None:
            return 0.0
        age = (now_us - vouched[0]) / 1e6
        return age if age > vouched[1] else 0.0

    def fail(self, exc: BaseException) -> None:
        """Stop the whole sync with ``exc`` (the first failure is kept)."""
        with self.lock:
            if self.failure is None:
                self.failure = exc
                self.status.state, self.status.error = "error", str(exc)
        self.stop.set()

    def snapshot_status(self) -> SyncStatus:
        """A copy of the status with lags computed now."""
        now_us = time.time_ns() // 1000
        with self.lock:
            parts: dict[tuple[str, str], list[int]] = {}
            for direction, table, partition in list(self.idle) + list(self.last_commit_us):
                parts.setdefault((direction, table), []).append(partition)
            tables = []
            for key, record in sorted(self.tables.items()):
                worst: tuple[float, int] | None = None  # (lag, partition) of the most behind partition
                for partition in sorted(set(parts.get(key, ()))):
                    at = (*key, partition)
                    commit = self.last_commit_us.get(at)
                    lag: float | None
                    if self.idle.get(at):
                        lag = self._idle_lag(key[0], now_us) if record.state == "streaming" else 0.0
                    else:
                        lag = max(0.0, (now_us - commit) / 1e6) if commit else None
                    if lag is not None and (worst is None or lag > worst[0]):
                        worst = (lag, partition)
                if worst is not None:
                    record.lag_s = worst[0]
                    record.position = self.positions.get((*key, worst[1]), record.position)
                if record.lag_s is not None:
                    metrics.LAG.labels(self.name, key[1]).set(record.lag_s)
                tables.append(TableStatus(**{f: getattr(record, f) for f in record.__struct_fields__}))
                tables[-1].applied, tables[-1].captured = dict(record.applied), dict(record.captured)
            status = SyncStatus(
                **{f: getattr(self.status, f) for f in self.status.__struct_fields__ if f not in ("tables", "roles")},
                roles=list(self.status.roles),
                tables=tables,
            )
            if status.state not in ("error", "stopped"):
                states = {t.state for t in tables}
                status.state = "snapshotting" if "snapshotting" in states else "streaming" if tables else "starting"
            return status


def resync_dir(work_dir: Path, sync: str) -> Path:
    """``<project>/.sluice/syncs/<sync>.resync``."""
    return status_dir(work_dir) / f"{sync}.resync"


def request_resync(work_dir: Path, sync: str, table: str) -> Path:
    """Ask the sync to reset and snapshot ``table`` again (a source table, ``namespace.name``)."""
    folder = resync_dir(work_dir, sync)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / table
    path.write_text(f"{time.time()}\n")
    return path


def resync_name(table: str, sources: Sequence[str], sync: str, copies: Sequence[str] = ()) -> str:
    """The source table (``namespace.name``) a resync of ``table`` asks for: ``table`` itself when it is one of
    ``sources`` (the declared source's tables, from the sync's status file) or nothing is known yet (the capture
    checks it), else the one table of ``sources`` whose name without namespace is ``table``. Raises
    :class:`ConfigError` for a name of ``copies`` (both ways: the target side's copies, which a resync would copy
    over the source), for several matches, and (with a did-you-mean) for none."""
    if table in copies and table not in sources:
        raise ConfigError(
            f"{table} is the target side's copy of a table of sync '{sync}': a resync empties the target and copies "
            f"the declared source again; name the source table ({', '.join(sorted(sources))})"
        )
    if not sources or table in sources:
        return table
    matches = [name for name in sources if name.rpartition(".")[2] == table]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"sync '{sync}' has several tables named {table!r} ({', '.join(matches)}); give one of them in full")
    raise ConfigError(
        f"sync '{sync}' has no table {table!r}; give one of its tables ({', '.join(sorted(sources))}) as "
        "namespace.name, or by its name alone when no other table has it."
        f"{did_you_mean(table, sources if '.' in table else [n.rpartition('.')[2] for n in sources])}"
    )


def resync_requests(work_dir: Path, sync: str) -> list[str]:
    """Tables waiting for a resync."""
    folder = resync_dir(work_dir, sync)
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


@contextmanager
def handled(work_dir: Path, sync: str, table: str) -> Iterator[None]:
    """Delete the request for ``table`` once the block succeeds."""
    yield
    (resync_dir(work_dir, sync) / table).unlink(missing_ok=True)
