"""What a running streaming object reports: rates, lag per partition, its last committed micro-batch.

One :class:`StreamStatus` per object, written by its loop's thread and read by ``sluice stream``'s progress
lines and ``GET /streams`` (a snapshot taken under a lock). The Prometheus metrics of
:mod:`sluice.observability.metrics` (``sluice_stream_*``) are updated at the same moments.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.observability import metrics

State = Literal["starting", "running", "lake_unreachable", "stopping", "stopped", "failed"]
"""``lake_unreachable``: the loop waits for the lake to answer again (its position held; ``error`` says since when)."""
RATE_WINDOW_S = 10.0
"""Records/s and bytes/s are averaged over the micro-batches committed in this many seconds (0 once the loop found
nothing to read, and once stopped)."""


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """One committed micro-batch: its number, when (unix seconds), rows written, records consumed, seconds taken."""

    batch: int
    at: float
    rows: int
    records: int
    bytes: int
    duration_s: float


@dataclass
class StreamStatus:
    """The live status of one streaming object (see the module)."""

    object_id: int
    name: str
    state: State = "starting"
    error: str | None = None
    records: int = 0
    bytes: int = 0
    dead_letters: int = 0
    late_records: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    last_batch: BatchInfo | None = None
    unreachable: str | None = None
    """``Kafka at H:P unreachable since HH:MM:SS`` while the consumer cannot reach its broker (the lag is then unknown)."""
    started_at: float = field(default_factory=time.time)
    history_known: bool = False
    """True once the lake's last commit was read at start (:meth:`resumed`): ``last_batch`` None then means none yet."""
    idle: bool = False
    """True while the loop's last gathering found no record (records/s is then 0), until the next commit."""
    _told: str | None = None  # the error the last progress line said
    _recent: deque[BatchInfo] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for metric in (
            metrics.STREAM_RECORDS,
            metrics.STREAM_BYTES,
            metrics.STREAM_LATE_RECORDS,
            metrics.STREAM_BATCH_DURATION,
        ):
            metric.labels(self.name)  # every series exists at zero from the start
        metrics.STREAM_LAST_COMMIT.labels(self.name)

    def set_state(self, state: State, error: str | None = None) -> None:
        with self._lock:
            self.state, self.error = state, error

    def resumed(self, commit: dict[str, Any] | None) -> None:
        """The lake's last commit record, read at start (None: nothing committed yet): the last batch shown until the
        first new one commits (not counted in the rates)."""
        with self._lock:
            self.history_known = True
            if commit and "batch" in commit:
                rows, records = int(commit.get("rows", 0)), int(commit.get("records", 0))
                self.last_batch = BatchInfo(int(commit["batch"]), float(commit.get("at", 0.0)), rows, records, 0, 0.0)

    def set_idle(self) -> None:
        """The loop gathered nothing: the rates are 0 until the next micro-batch commits."""
        with self._lock:
            self.idle = True

    def committed(self, info: BatchInfo, dead_letters: int, late: int) -> None:
        """Count a committed micro-batch (and the dead letters and late records it set apart)."""
        name = self.name
        with self._lock:
            self.records += info.records
            self.bytes += info.bytes
            self.dead_letters += dead_letters
            self.late_records += late
            self.last_batch, self.idle, self.history_known = info, False, True
            self._recent.append(info)
            while self._recent and self._recent[0].at < info.at - RATE_WINDOW_S:
                self._recent.popleft()
        metrics.STREAM_RECORDS.labels(name).inc(info.records)
        metrics.STREAM_BYTES.labels(name).inc(info.bytes)
        metrics.STREAM_LATE_RECORDS.labels(name).inc(late)
        metrics.STREAM_BATCH_DURATION.labels(name).observe(info.duration_s)
        metrics.STREAM_LAST_COMMIT.labels(name).set(info.at)

    def set_unreachable(self, outage: str | None) -> None:
        """Record the broker outage under way (:meth:`StreamConsumer.unreachable`), or its end (None)."""
        with self._lock:
            self.unreachable = outage

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        with self._lock:
            self.lag = dict(lag)
        for (topic, partition), value in lag.items():
            metrics.STREAM_LAG.labels(self.name, topic, str(partition)).set(value)

    @property
    def lag_total(self) -> int:
        """Records behind the high watermarks, all partitions together."""
        with self._lock:
            return sum(self.lag.values())

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """Records/s and bytes/s over the micro-batches of the last :data:`RATE_WINDOW_S` seconds; 0 while idle (the
        loop found nothing to read) and once stopped or failed."""
        now = time.time() if now is None else now
        with self._lock:
            if self.idle or self.state in ("stopped", "failed"):
                return 0.0, 0.0
            recent = [b for b in self._recent if b.at >= now - RATE_WINDOW_S]
        if not recent:
            return 0.0, 0.0
        span = max(now - (recent[0].at - recent[0].duration_s), 1e-3)
        return sum(b.records for b in recent) / span, sum(b.bytes for b in recent) / span

    def snapshot(self) -> dict[str, Any]:
        """The JSON of ``GET /streams`` for this object."""
        records_s, bytes_s = self.rates()
        with self._lock:
            last = self.last_batch
            return {
                "id": self.object_id,
                "name": self.name,
                "state": self.state,
                "error": self.error,
                "unreachable": self.unreachable,
                "records_per_s": round(records_s, 1),
                "bytes_per_s": round(bytes_s, 1),
                "records": self.records,
                "bytes": self.bytes,
                "lag": [{"topic": t, "partition": p, "records": n} for (t, p), n in sorted(self.lag.items())],
                "lag_total": sum(self.lag.values()),
                "dead_letters": self.dead_letters,
                "late_records": self.late_records,
                "last_batch": None
                if last is None
                else {
                    "batch": last.batch,
                    "at": last.at,
                    "rows": last.rows,
                    "records": last.records,
                    "duration_s": last.duration_s,
                },
            }

    def progress_line(self) -> str:
        """One line for stderr: ``transactions: 210,345 records/s, 40.1 MB/s, lag 1,204, batch 17 (250,000 rows) at 12:00:01``.

        The error is in the first line after it changes only (``failed (TerminalError: ...)``), not repeated in every
        line after it (``failed``): ``sluice stream`` prints a line every 2 s for each object."""
        records_s, bytes_s = self.rates()
        with self._lock:
            last, lag, state = self.last_batch, sum(self.lag.values()), self.state
            told, self._told = self._told, self.error
            detail = self.error if self.error != told else None
            error = f" ({detail})" if detail else ""
            since = (self.error or "lake unreachable").partition(": ")[0]
            outage, known = self.unreachable, self.history_known
        if last:
            committed = f"batch {last.batch} ({last.rows:,} rows) at {time.strftime('%H:%M:%S', time.localtime(last.at))}"
            latest = f"last {committed}"
        else:  # before the lake's last commit was read (an outage at start), the last batch is not known
            committed = latest = "no batch committed yet" if known else "last batch not known yet"
        if state == "lake_unreachable":  # error: "lake unreachable since HH:MM:SS: <the lake's error>"
            why = f" ({detail.partition(': ')[2]})" if detail else ""
            return f"{self.name}: {since}{why}, retrying, position held; {latest}"
        if outage:  # the lag is the last one known: not told as if it were current
            return f"{self.name}: {state}{error}, {outage}, retrying; {latest}"
        if state in ("stopped", "failed"):  # no rate: nothing is read any more
            return f"{self.name}: {state}{error}, lag {lag:,}, {committed}"
        return f"{self.name}: {state}{error}, {records_s:,.0f} records/s, {bytes_s / 1e6:,.1f} MB/s, lag {lag:,}, {committed}"
