"""Progress lines of a long read: pages, records and bytes so far, at most every :data:`PROGRESS_EVERY_S` seconds.

A source that reads for a long time with nothing to show (a REST API walked page by page) logs one line every few
seconds, as ``sluice sync`` prints its snapshots' rows and ``sluice produce`` its records, and one closing line
when it printed any; a read shorter than :data:`PROGRESS_EVERY_S` prints nothing. The lines go to the
``sluice.progress`` logger at warning level, which ``sluice run`` shows by default (its level is ``warning``), as
Spark's start-up lines do (:mod:`sluice.transforms.spark_session`).

>>> lines = []
>>> seconds = iter([0.0, 6.0, 7.0])
>>> progress = ReadProgress("object 1001 (things)", "from the API", clock=lambda: next(seconds), emit=lines.append)
>>> progress.add(records=100, received=2_500_000)
>>> lines
['object 1001 (things): 1 page, 100 records, 2.5 MB from the API in 6 s so far']
>>> progress.done()
>>> lines[-1]
'object 1001 (things): 1 page, 100 records, 2.5 MB from the API in 7 s'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("sluice.progress")
PROGRESS_EVERY_S = 5.0
"""Seconds between two progress lines of one read (the first comes after that long)."""


def size_text(count: int) -> str:
    """Bytes in decimal units: ``950 B``, ``12.3 kB``, ``2.5 MB``, ``1.2 GB``."""
    value = float(count)
    for unit in ("B", "kB", "MB"):
        if round(value, 1) < 1000:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


class ReadProgress:
    """Counts one read's pages, records and bytes; logs them every ``every_s`` seconds (default
    :data:`PROGRESS_EVERY_S`, read at construction) and once at :meth:`done` when a line was shown.

    ``label`` names the object (``object 1001 (things)``), ``origin`` where the bytes come from (``from the API``);
    ``clock`` gives seconds (monotonic), ``emit`` takes each line (default: :data:`log`'s warning). Not
    thread-safe: the thread that consumes the read calls it.
    """

    def __init__(
        self,
        label: str,
        origin: str,
        *,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.label, self.origin, self.clock = label, origin, clock
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.emit = emit or log.warning
        self.pages = self.records = self.received = 0
        self.began = self.last = clock()
        self.shown = False

    def add(self, records: int, received: int, pages: int = 1) -> None:
        """``pages`` more pages of ``records`` records; ``received``: the bytes received in all so far."""
        self.pages += pages
        self.records += records
        self.received = received
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self.shown = True
            self.emit(self.line(now) + " so far")

    def done(self) -> None:
        """The read ended: a closing line when progress was shown."""
        if self.shown:
            self.emit(self.line(self.clock()))

    def line(self, now: float) -> str:
        pages = f"{self.pages:,} page{'s' if self.pages != 1 else ''}"
        read = f"{self.records:,} records, {size_text(self.received)} {self.origin}"
        return f"{self.label}: {pages}, {read} in {now - self.began:.0f} s"
