"""The capture child's metrics, exported by its parent (``sluice sync --processes 2``, ``auto``'s usual choice).

The capture child of a split run serves no metrics; its parent serves ``--metrics-port`` but only applies, so the
capture-side series of :mod:`sluice.observability.cdc_metrics` would stay at 0 there. :class:`ChildMetrics` reads
the status file the child writes (``<project>/.sluice/syncs/<sync>.capture.json``,
:func:`sluice.cdc.status.write_status`, every :data:`sluice.cdc.runtime.STATUS_EVERY_S` seconds and once more when
it stops) and mirrors it, per table of its :class:`~sluice.cdc.status.TableStatus` rows, into the parent's series
(labels ``sync``, ``table``: the source table ``namespace.name``):

- ``sluice_cdc_changes_captured_total{operation}``: counter, rows, from ``captured`` (rows by operation name:
  snapshot, insert, update, delete, truncate);
- ``sluice_cdc_invalid_dates_total``: counter, dates turned into NULL, from ``invalid_dates``;
- ``sluice_cdc_snapshot_rows_total``: counter, rows, from ``snapshot_rows``;
- ``sluice_cdc_snapshot_progress_ratio``: gauge, 0 to 1: 1 once ``snapshot_done`` unless the table snapshots again
  (a resync: state ``snapshotting``), else ``snapshot_rows / snapshot_total`` capped at 1 (0 without an estimate),
  as the capturing process sets it itself (:meth:`sluice.cdc.state.SyncState.snapshot_rows`);
- ``sluice_cdc_table_stopped``: gauge, 0 or 1: 1 while the child's state of the table is ``error``; when it leaves
  ``error``, the parent's own state decides (``stopped_here``: its apply may have stopped the table too).

A counter grows by the difference between the file's count and the count mirrored last, and never decreases: a
lower count becomes the base the next difference is taken from (one child's counts only grow). Only a file that
names the child's pid is read: one left by an earlier run (another pid), half a file or none yet is skipped until
the next read. The parent runs apply only: it never counts captured rows, invalid dates or snapshot rows itself,
nor sets the progress, so nothing is counted twice.

Why a status file rather than prometheus-client's multiprocess mode or a second port: the file is already written
every second for ``sluice sync status``, so the figures agree with it and no new channel is needed; multiprocess mode
would have to be set (``PROMETHEUS_MULTIPROC_DIR``) before prometheus-client is imported in both processes, switches
every metric of both to memory-mapped files that a ``kill -9`` leaves behind, and changes how gauges aggregate; a
second port would make every scrape configuration and dashboard know two targets per sync. The cost is a delay of
about one status interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec
from prometheus_client import Counter

from sluice.cdc.runtime import STATUS_EVERY_S, status_suffix
from sluice.cdc.status import SyncStatus, TableStatus, status_file
from sluice.observability import cdc_metrics as metrics


class ChildMetrics:
    """Mirrors the status file of the capture child ``pid`` of sync ``sync`` into this process's metrics.

    ``stopped_here(direction, table)``: whether this process stopped the table itself (its state ``error``).
    ``every_s``: seconds between two reads by :meth:`poll` (the child writes its file about as often)."""

    def __init__(
        self,
        work_dir: Path,
        sync: str,
        pid: int,
        stopped_here: Callable[[str, str], bool] | None = None,
        every_s: float = STATUS_EVERY_S,
    ) -> None:
        self.path = status_file(work_dir, sync, status_suffix({"capture"}, 1))
        self.sync, self.pid, self.every_s = sync, pid, every_s
        self.stopped_here = stopped_here or (lambda direction, table: False)
        self._next = 0.0
        self._seen: dict[tuple[str, ...], int] = {}
        """The count last mirrored, per ``(metric, table[, operation])``."""
        self._stopped: set[tuple[str, str]] = set()
        """``(direction, table)`` the child's last file said were in state ``error``."""

    def poll(self) -> bool:
        """:meth:`read` when :attr:`every_s` passed since the last read; whether the child's file was read."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return self.read()

    def read(self) -> bool:
        """Read the child's file now and mirror it; False when it is missing, unreadable or not the child's."""
        try:
            status = msgspec.json.decode(self.path.read_bytes(), type=SyncStatus)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return False
        if status.pid != self.pid:
            return False
        for table in status.tables:
            self._mirror(table)
        return True

    def _mirror(self, t: TableStatus) -> None:
        name = t.source_table
        metrics.register_table(self.sync, name)
        for operation, rows in t.captured.items():
            self._add(metrics.CAPTURED.labels(self.sync, name, operation), ("captured", name, operation), rows)
        self._add(metrics.INVALID_DATES.labels(self.sync, name), ("invalid_dates", name), t.invalid_dates)
        self._add(metrics.SNAPSHOT_ROWS.labels(self.sync, name), ("snapshot_rows", name), t.snapshot_rows)
        metrics.SNAPSHOT_PROGRESS.labels(self.sync, name).set(progress(t))
        key = (t.direction, name)
        if t.state == "error":
            self._stopped.add(key)
            metrics.TABLE_STOPPED.labels(self.sync, name).set(1)
        elif key in self._stopped:
            self._stopped.discard(key)
            metrics.TABLE_STOPPED.labels(self.sync, name).set(1 if self.stopped_here(t.direction, name) else 0)

    def _add(self, counter: Counter, key: tuple[str, ...], count: int) -> None:
        """Increase ``counter`` by what ``count`` grew since the last read of ``key``."""
        grown = count - self._seen.get(key, 0)
        if grown > 0:
            counter.inc(grown)
        self._seen[key] = count


def progress(t: TableStatus) -> float:
    """The snapshot progress of ``t``, 0 to 1 (see the module's docstring)."""
    if t.snapshot_done and t.state != "snapshotting":
        return 1.0
    return min(1.0, t.snapshot_rows / t.snapshot_total) if t.snapshot_total else 0.0
