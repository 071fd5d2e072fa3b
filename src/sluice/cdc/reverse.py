"""Both ways: what a copy of the declared source over the target (``--resnapshot``, ``sluice sync resync TABLE``,
``snapshot: when_needed`` after a lost position) does to the other direction, target -> source.

The copy replaces the target's rows with the source's, so a change the target had before it (written while the
sync was stopped, or captured and not applied yet) must never reach the source afterwards: the source would keep
it while the target holds the copy, and the two sides would stay different for good. So the capture of the
declared source calls, for the tables it copies (:class:`~sluice.cdc.capture_loop.CaptureSide`):

1. :meth:`ReverseReset.discard` before it empties their target tables: the target's end position ``E`` is read
   (past every change committed on the target so far) and stored in the source as the reverse apply's position
   of each of those tables (:meth:`~sluice.cdc.base.Apply.skip_to`), so the reverse apply skips every change up
   to ``E`` wherever it comes from: the bus, the target side's capture resuming from an older checkpoint, a run
   after a crash. A change committed after ``E`` is applied to the source as usual;
2. :meth:`ReverseReset.settle` once they are emptied, before the source is read: waits (at most
   :data:`SETTLE_WAIT_S`) until the target side's capture in this process read past the target's end position
   and the reverse apply applied it, so a target change made between ``E`` and the emptying (which the
   emptying removed from the target) is in the source when the copy reads it, and comes back with the copy.

Until the capture of the declared source knows whether it copies (it opened its stream, or :meth:`discard`
ran), the reverse apply waits (:attr:`ReverseReset.hold`, :attr:`~sluice.cdc.apply_loop.ApplyDirection.hold`):
a change the copy replaces is not applied before the copy decides to replace it. The target side's capture
runs meanwhile (its changes wait on the bus). With ``--resnapshot`` that capture also starts afresh from the
target's position read at start, not its checkpoint (:class:`~sluice.cdc.runtime.SyncRuntime`): a PostgreSQL
slot moves past the discarded changes, and a purged MariaDB position does not stop the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sluice.cdc.apply_loop import ApplyDirection
from sluice.cdc.base import Apply, TableRef
from sluice.cdc.events import Position

log = logging.getLogger("sluice.cdc")

SETTLE_WAIT_S = 60.0
"""Longest wait of :meth:`ReverseReset.settle` for the target side's changes to reach the source."""


class CaptureProgress(Protocol):
    """What :meth:`ReverseReset.settle` reads of the target side's capture (a :class:`~sluice.cdc.capture_loop.CaptureSide`)."""

    position: Position | None
    finished: bool


class ReverseReset:
    """The target -> source direction of a both-ways sync, as the capture of the declared source copying the
    source over the target sees it (module docstring)."""

    def __init__(
        self,
        sync: str,
        end_position: Callable[[], tuple[Position, str]],
        make_apply: Callable[[], Apply],
        reverse_refs: Callable[[], dict[str, TableRef]],
        partitions: int,
        stop: threading.Event,
    ) -> None:
        self.sync = sync
        self.end_position = end_position
        """The target's end position now (:meth:`~sluice.cdc.base.Capture.end_position`, a capture of its own)."""
        self.make_apply = make_apply
        """An apply writing into the source (the reverse direction's target)."""
        self.reverse_refs = reverse_refs
        """The reverse direction's tables by source name (the forward tables' targets)."""
        self.partitions = partitions
        self.stop = stop
        self.hold = threading.Event()
        """Set once the reverse apply may apply (:meth:`release`)."""
        self.capture: CaptureProgress | None = None
        """The target side's capture when it runs in this process."""
        self.reverse_apply: ApplyDirection | None = None
        """The reverse direction's apply when it runs in this process."""
        self.forward_apply: ApplyDirection | None = None
        """The forward direction's apply when it runs in this process and empties the targets on resync markers
        (``partitions:`` above 1): :meth:`settle` first waits until it did."""

    def release(self) -> None:
        """The capture of the declared source decided: the reverse apply may go on."""
        self.hold.set()

    def discard(self, refs: Sequence[TableRef]) -> None:
        """Before the target tables of ``refs`` (forward refs) are emptied: the reverse apply never applies a change
        of theirs committed on the target up to now. Releases the reverse apply."""
        reverse = self.reverse_refs()
        tables = [reverse[ref.target_qualified] for ref in refs if ref.target_qualified in reverse]
        if tables:
            position, text = self.end_position()
            apply = self.make_apply()
            try:
                for table in tables:
                    apply.skip_to(table, position, text, self.partitions)
            finally:
                apply.close()
            log.info(
                "sync %s: changes made on the target to %s up to %s are replaced by the copy of the source, not applied to it",
                self.sync,
                ", ".join(table.source.qualified for table in tables),
                text,
            )
        self.release()

    def settle(self) -> None:
        """After the target tables were emptied, before the source is read: wait until the target's changes up to
        now are applied to the source (by the applies of this process; at most :data:`SETTLE_WAIT_S`)."""
        capture = self.capture
        if capture is None or capture.finished:
            return
        deadline = time.monotonic() + SETTLE_WAIT_S
        forward, reverse = self.forward_apply, self.reverse_apply
        while forward is not None and not forward.drained():  # the markers emptied the target tables
            if self._waited_out(deadline):
                return
        wanted, _ = self.end_position()
        while capture.position is None or capture.position < wanted or (reverse is not None and not reverse.drained()):
            if capture.finished or self._waited_out(deadline):
                return

    def _waited_out(self, deadline: float) -> bool:
        if time.monotonic() >= deadline:
            log.warning(
                "sync %s: the target's changes did not reach the source within %.0f s before the copy; a change made on "
                "the target while the copy began may be kept by the source only",
                self.sync,
                SETTLE_WAIT_S,
            )
            return True
        return self.stop.wait(0.05)
