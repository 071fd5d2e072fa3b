"""The data-quality checks' results of a run, by object, for the run and object JSON (``views.py``) and the UI.

A run's results are its ``CheckFinished`` events (docs/checks.md), read back from ``sluice.events`` from the run's
first offset: the bus already keeps them, so the server needs no store of its own. Only messages whose bytes
name ``CheckFinished`` or ``RunFinished`` are decoded. An object keeps the results of its latest attempt (a retry
runs its checks again). The active run is read on from where the last read stopped; a finished run is read once,
up to its ``RunFinished``, and kept in a cache bounded by bytes (``cache_bytes``, 4 MiB: a result costs about
300 bytes).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sluice import events as ev
from sluice.bounded import ByteLru
from sluice.bus import names
from sluice.bus.base import Bus
from sluice.state.base import RESUMABLE_RUN_STATUSES, RunRecord

READ_BATCH = 2000
RESULT_BYTES = 300  # what one result costs in the cache, roughly: a dict of 9 fields and a short sample
_CHECK = b"CheckFinished"
_FINISHED = b"RunFinished"

CheckResult = dict[str, Any]
"""One check's result: ``check``, ``kind``, ``severity``, ``status``, ``failing_rows``, ``sample``, ``message``,
``duration_s`` (seconds), ``attempt``, ``covered`` (``load`` or ``table``), ``rows_checked`` (rows looked at, or None)."""


def result_of(event: ev.CheckFinished) -> CheckResult:
    return {
        "check": event.check,
        "kind": event.kind,
        "severity": event.severity,
        "status": event.status,
        "failing_rows": event.failing_rows,
        "sample": list(event.sample),
        "message": event.message,
        "duration_s": event.duration_s,
        "attempt": event.attempt,
        "covered": event.covered,
        "rows_checked": event.rows_checked,
    }


def check_state(results: list[CheckResult]) -> str | None:
    """What an object's badge says: ``failed`` (an ``error`` check failed or could not run), ``warned`` (only
    ``warn`` checks did), ``passed``, or None when it has no result."""
    if not results:
        return None
    bad = [r for r in results if r["status"] != "passed"]
    if any(r["severity"] == "error" for r in bad):
        return "failed"
    return "warned" if bad else "passed"


@dataclass
class _RunChecks:
    next_offset: int
    done: bool = False
    by_object: dict[int, dict[str, CheckResult]] = field(default_factory=dict)

    def add(self, event: ev.CheckFinished) -> None:
        checks = self.by_object.setdefault(event.object_id, {})
        attempt = max((r["attempt"] for r in checks.values()), default=0)
        if event.attempt < attempt:
            return  # a late result of an attempt already retried
        if event.attempt > attempt:
            checks.clear()
        checks[event.check] = result_of(event)

    def snapshot(self) -> dict[int, list[CheckResult]]:
        return {oid: list(checks.values()) for oid, checks in self.by_object.items()}

    def size(self) -> int:
        return 200 + RESULT_BYTES * sum(len(checks) for checks in self.by_object.values())


class CheckResults:
    """Object id -> its check results in a run, read from the bus (thread-safe)."""

    def __init__(self, bus: Bus, cache_bytes: int = 4 * 1024 * 1024) -> None:
        self.bus = bus
        self._finished: ByteLru[str, _RunChecks] = ByteLru(cache_bytes, _RunChecks.size)
        self._active: dict[str, _RunChecks] = {}
        self._lock = threading.Lock()

    def of_run(self, record: RunRecord) -> dict[int, list[CheckResult]]:
        """The results of ``record``'s run so far (blocking: reads the bus)."""
        with self._lock:
            found = self._finished.get(record.run_id)
            if found is None:
                found = self._active.pop(record.run_id, None) or _RunChecks(record.first_offset)
                self._read(record.run_id, found)
                if found.done or record.status not in RESUMABLE_RUN_STATUSES:
                    self._finished.put(record.run_id, found)
                    self._active.clear()  # one run is active at a time: an older one here is over
                else:
                    self._active = {record.run_id: found}
            return found.snapshot()

    def _read(self, run_id: str, into: _RunChecks) -> None:
        while not into.done:
            messages = self.bus.read(names.EVENTS_TOPIC, into.next_offset, READ_BATCH)
            for message in messages:
                into.next_offset = message.offset + 1
                value = message.value
                if _CHECK not in value and _FINISHED not in value:
                    continue
                try:
                    event = ev.decode(value)
                except ValueError:
                    continue
                if event.run_id != run_id:
                    continue
                if isinstance(event, ev.CheckFinished):
                    into.add(event)
                elif isinstance(event, ev.RunFinished):
                    into.done = True
                    break
            if len(messages) < READ_BATCH:
                return
