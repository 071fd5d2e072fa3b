"""Conflict resolution of both-ways syncs: who wins when a key changed on both sides before either saw the other.

A :class:`~sluice.cdc.base.Conflict` reaches the resolver when the change coming from the other side
expected a target row (its ``before`` image, or no row for an insert) that is not what the target holds.

* ``source-wins``: the change coming from the sync's declared ``source`` side is applied, the other dropped;
* ``target-wins``: the reverse;
* ``newer-wins`` (default): the version with the later source commit time wins. The commit time of the
  target's local version comes from the target side's own capture, running in the same process, which
  records ``(table, key) -> commit time`` of every local change it reads (:class:`LocalVersions`, bounded,
  least recently used out). When capture has not read that version yet, the resolver waits up to
  :data:`WAIT_S` for it to catch up. Equal times, or a local time still unknown after the wait, go to the
  declared ``source`` side (a deterministic tie-break; SymmetricDS and pglogical also break ties by origin).

Where that wait happens: the resolver is called by :meth:`~sluice.cdc.base.Apply.apply_batch` inside the
target transaction, which holds the target's positions row and the rows it read, and may hold whatever the
target side's capture needs to read its log (the in-memory fakes of the tests hold their database's one lock).
Waiting there for that capture can stall it until the wait ends, and the verdict is then "local time
unknown" although the local version was committed long before. So apply runs each batch under
:func:`lookups_outside`: a resolver missing a local time raises :class:`LocalVersionPending` instead of
waiting, the plugin rolls the transaction back, :func:`lookups_outside` waits (up to :data:`WAIT_S`, for
every key the batch missed) with no transaction open, then runs the batch again, whose resolver takes what
capture has recorded by then without waiting again. A resolver called outside :func:`lookups_outside` waits
in place, as before.

Every conflict is counted and appended, with both versions and the verdict, as one JSON line to
``<project>/.sluice/syncs/<sync>.conflicts.jsonl``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from sluice.cdc.base import Conflict, Resolver, SyncError
from sluice.cdc.config import ConflictPolicy
from sluice.cdc.events import key_text

WAIT_S = 2.0
"""Longest a newer-wins decision waits for the target side's capture to read the local version."""


class LocalVersions:
    """``(source table, key text) -> commit time (µs)`` of the changes one side's capture read; bounded (LRU)."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._times: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._cond = threading.Condition()
        self.read_up_to_us = 0
        """Wall time (µs) up to which capture has read everything committed (set after an idle batch)."""

    def record(self, table: str, key: list[Any], commit_ts_us: int) -> None:
        with self._cond:
            entry = (table, key_text(key))
            self._times[entry] = commit_ts_us
            self._times.move_to_end(entry)
            if len(self._times) > self.capacity:
                self._times.popitem(last=False)
            self._cond.notify_all()

    def caught_up(self, wall_us: int) -> None:
        """Capture has read everything committed before ``wall_us``."""
        with self._cond:
            self.read_up_to_us = max(self.read_up_to_us, wall_us)
            self._cond.notify_all()

    def lookup(self, table: str, key: list[Any], wait_s: float = WAIT_S, asked_us: int | None = None) -> int | None:
        """The local commit time (µs) of ``key``, waiting up to ``wait_s`` seconds for capture to pass
        ``asked_us`` (wall µs, default now); None if unknown."""
        asked_us = time.time_ns() // 1000 if asked_us is None else asked_us
        deadline = time.monotonic() + wait_s
        entry = (table, key_text(key))
        with self._cond:
            while entry not in self._times and self.read_up_to_us < asked_us:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._times.get(entry)

    def settled(self, table: str, key: list[Any], asked_us: int) -> bool:
        """Whether waiting could not change :meth:`lookup`'s answer: ``key``'s time is known, or capture has read
        everything committed before ``asked_us`` (wall µs)."""
        with self._cond:
            return (table, key_text(key)) in self._times or self.read_up_to_us >= asked_us


class LocalVersionPending(SyncError):
    """A newer-wins resolver run under :func:`lookups_outside` lacks the local commit time of some keys that
    the target side's capture has not read yet: roll the apply transaction back, :meth:`wait`, run it again.

    ``missing``: ``(target side's source table, key)`` pairs; ``asked_us``: wall µs of the resolver's call
    (capture must pass it); ``wait_s``: seconds to wait at most."""

    def __init__(self, versions: LocalVersions, missing: list[tuple[str, list[Any]]], asked_us: int, wait_s: float) -> None:
        first_table, first_key = missing[0]
        super().__init__(
            f"table {first_table}: the local commit time of key {key_text(first_key)} (and {len(missing) - 1} more) "
            "is not read by capture yet"
        )
        self.versions, self.missing, self.asked_us, self.wait_s = versions, missing, asked_us, wait_s

    def wait(self) -> None:
        """Wait, with no transaction open, until capture read the missing versions (or passed ``asked_us``),
        at most ``wait_s`` in all; the batch's next run then decides with what is known."""
        deadline = time.monotonic() + self.wait_s
        for table, key in self.missing:
            self.versions.lookup(table, key, max(0.0, deadline - time.monotonic()), self.asked_us)
        waited = _outside.get()
        if waited is not None:
            waited.update((table, key_text(key)) for table, key in self.missing)


_outside: ContextVar[set[tuple[str, str]] | None] = ContextVar("sluice_cdc_lookups_outside", default=None)
"""Under :func:`lookups_outside`: the ``(table, key text)`` entries already waited for by this batch."""

T = TypeVar("T")


def lookups_outside(run: Callable[[], T]) -> T:
    """``run()`` (one apply transaction that may call a resolver), again after each
    :class:`LocalVersionPending` once its wait is over: newer-wins waits for local versions with no target
    transaction open. Each key is waited for once per call; its second run decides with what is known.
    Returns what ``run`` returns; raises what it raises other than :class:`LocalVersionPending`."""
    token = _outside.set(set())
    try:
        while True:
            try:
                return run()
            except LocalVersionPending as pending:
                pending.wait()
    finally:
        _outside.reset(token)


class ConflictLog:
    """Counts conflicts and appends them to a JSON-lines file (thread-safe)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._lock = threading.Lock()

    def record(self, direction: str, conflict: Conflict, applied: bool, rule: str) -> None:
        line = {
            "at": time.time(),
            "direction": direction,
            "table": conflict.event.table,
            "key": conflict.event.key,
            "incoming": msgspec.to_builtins(conflict.event),
            "current": conflict.current,
            "applied": applied,
            "rule": rule,
        }
        with self._lock:
            self.count += 1
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("ab") as out:
                    out.write(msgspec.json.encode(line) + b"\n")


def make_resolver(
    policy: ConflictPolicy,
    incoming_is_source: bool,
    target_table_of: Callable[[str], str],
    local: LocalVersions | None,
    log: ConflictLog,
    direction: str,
    wait_s: float = WAIT_S,
) -> Resolver:
    """The resolver for changes flowing one way of a both-ways sync.

    ``incoming_is_source``: the changes come from the declared ``source`` side. ``target_table_of`` maps
    the incoming event's table to the target side's source-table name (the key :class:`LocalVersions` uses).
    ``newer-wins`` under :func:`lookups_outside` raises :class:`LocalVersionPending` for local times capture
    has not read yet (once per key); elsewhere it waits up to ``wait_s`` seconds for each in place.
    """

    def pending(conflicts: list[Conflict]) -> None:
        """Under :func:`lookups_outside`: raise :class:`LocalVersionPending` for the keys to wait for first."""
        waited = _outside.get()
        if policy != "newer-wins" or local is None or waited is None:
            return
        asked_us = time.time_ns() // 1000
        missing = []
        for conflict in conflicts:
            table, key = target_table_of(conflict.event.table), conflict.event.key
            if (table, key_text(key)) not in waited and not local.settled(table, key, asked_us):
                missing.append((table, key))
        if missing:
            raise LocalVersionPending(local, missing, asked_us, wait_s)

    def decide(conflict: Conflict) -> tuple[bool, str]:
        if policy == "source-wins":
            return incoming_is_source, "source-wins"
        if policy == "target-wins":
            return not incoming_is_source, "target-wins"
        waited_outside = _outside.get() is not None  # then pending() left only what waiting cannot change
        table = target_table_of(conflict.event.table)
        local_ts = local.lookup(table, conflict.event.key, 0.0 if waited_outside else wait_s) if local else None
        incoming_ts = conflict.event.source.commit_ts_us
        if local_ts is None:
            return incoming_is_source, "newer-wins: local time unknown, source side wins"
        if incoming_ts != local_ts:
            return incoming_ts > local_ts, "newer-wins"
        return incoming_is_source, "newer-wins: equal times, source side wins"

    def resolve(conflicts: list[Conflict]) -> list[bool]:
        pending(conflicts)
        verdicts = []
        for conflict in conflicts:
            applied, rule = decide(conflict)
            log.record(direction, conflict, applied, rule)
            verdicts.append(applied)
        return verdicts

    return resolve
