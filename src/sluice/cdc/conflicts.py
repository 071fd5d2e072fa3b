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

Every conflict is counted and appended, with both versions and the verdict, as one JSON line to
``<project>/.sluice/syncs/<sync>.conflicts.jsonl``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from sluice.cdc.base import Conflict, Resolver
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

    def lookup(self, table: str, key: list[Any], wait_s: float = WAIT_S) -> int | None:
        """The local commit time of ``key``, waiting up to ``wait_s`` for capture to pass now; None if unknown."""
        asked_us = time.time_ns() // 1000
        deadline = time.monotonic() + wait_s
        entry = (table, key_text(key))
        with self._cond:
            while entry not in self._times and self.read_up_to_us < asked_us:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._times.get(entry)


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
    """

    def decide(conflict: Conflict) -> tuple[bool, str]:
        if policy == "source-wins":
            return incoming_is_source, "source-wins"
        if policy == "target-wins":
            return not incoming_is_source, "target-wins"
        local_ts = local.lookup(target_table_of(conflict.event.table), conflict.event.key, wait_s) if local else None
        incoming_ts = conflict.event.source.commit_ts_us
        if local_ts is None:
            return incoming_is_source, "newer-wins: local time unknown, source side wins"
        if incoming_ts != local_ts:
            return incoming_ts > local_ts, "newer-wins"
        return incoming_is_source, "newer-wins: equal times, source side wins"

    def resolve(conflicts: list[Conflict]) -> list[bool]:
        verdicts = []
        for conflict in conflicts:
            applied, rule = decide(conflict)
            log.record(direction, conflict, applied, rule)
            verdicts.append(applied)
        return verdicts

    return resolve
