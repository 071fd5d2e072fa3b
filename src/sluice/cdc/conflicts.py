"""Conflict resolution of both-ways syncs: who wins when a key changed on both sides before either saw the other.

A :class:`~sluice.cdc.base.Conflict` reaches the resolver when the change coming from the other side
expected a target row (its ``before`` image, or no row for an insert) that is not what the target holds.

* ``source-wins``: the change coming from the sync's declared ``source`` side is applied, the other dropped;
* ``target-wins``: the reverse;
* ``newer-wins`` (default): the version with the later source commit time wins. The commit time of the
  target's current row comes from :class:`LocalVersions` of the target side, in the same process: the
  versions of each key (image, commit time, id) its capture read and the apply writing into it took from the
  other side (bounded, least recently used out), the current row found among them by its image. When
  capture has not read that version yet, the resolver waits up to :data:`WAIT_S` for it to catch up. Equal
  times, or a local time still unknown after the wait, go to the declared ``source`` side (a deterministic
  tie-break; SymmetricDS and pglogical also break ties by origin).

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

Convergence needs both sides to decide alike about the same two versions: with the version each change
replaced (:attr:`~sluice.cdc.events.ChangeEvent.base`, stamped by capture from :class:`LocalVersions`) apply
also finds the changes made without knowledge of the target's current version when the images agree (an
insert after a delete the incoming side never received), :meth:`ConflictResolver.base_conflicts`.

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

from sluice.cdc.base import Conflict, SyncError
from sluice.cdc.config import ConflictPolicy
from sluice.cdc.events import ChangeEvent, key_text, version_id

WAIT_S = 2.0
"""Longest a newer-wins decision waits for the target side's capture to read the local version."""


RowMatch = Callable[[dict[str, Any] | None], bool]
"""Whether a row image (None: no row) is the target's current row (:attr:`~sluice.cdc.base.Conflict.matches`)."""

VERSIONS_PER_KEY = 4
"""Recent versions kept per key: a row is looked up among them by its image."""

KEYS_KEPT = 200_000
"""Keys whose versions one side keeps (the most recently changed; images take memory): for a key left out,
or after a restart, the images alone decide and newer-wins has no local time (the source side wins)."""


class LocalVersions:
    """``(source table, key text) ->`` the last :data:`VERSIONS_PER_KEY` versions of a key's row in one side's
    database, each ``(commit time µs, row image or None for a delete, version id)``; bounded over keys (LRU).

    Two writers record: the side's capture, each local change it reads, and the apply writing into the side,
    each change it takes from the other side (a version id is :func:`~sluice.cdc.events.version_id`, the
    commit time the one of the side where the change was made). A row is found by its image (``matches``):
    the newest recorded version equal to it. Newer-wins thus compares with the commit time of the version
    that *is* the target's current row, not of the last local change capture happened to have read; and
    capture stamps each change with the version it replaced (:attr:`~sluice.cdc.events.ChangeEvent.base`),
    so apply tells a change made after the target's current row reached its side (no conflict) from one
    made without knowing it, also when both rows look alike (two deletes, or an insert after a delete)."""

    def __init__(self, capacity: int = KEYS_KEPT) -> None:
        self.capacity = capacity
        self._times: OrderedDict[tuple[str, str], list[tuple[int, dict[str, Any] | None, bool, str]]] = OrderedDict()
        self._cond = threading.Condition()
        self.read_up_to_us = 0
        """Wall time (µs) up to which capture has read everything committed (set after an idle batch)."""

    def record(
        self,
        table: str,
        key: list[Any],
        commit_ts_us: int,
        row: dict[str, Any] | None = None,
        deleted: bool = False,
        version: str = "",
    ) -> None:
        """A version of ``key`` committed at ``commit_ts_us``: its row image ``row``, or ``deleted`` (a version
        recorded with neither matches any row); ``version``: its id, recorded once."""
        with self._cond:
            entry = (table, key_text(key))
            versions = self._times.get(entry)
            if versions is None:
                versions = self._times[entry] = []
            elif version and any(known[3] == version for known in versions):
                return
            versions.append((commit_ts_us, row, deleted, version))
            if len(versions) > VERSIONS_PER_KEY:
                del versions[0]
            self._times.move_to_end(entry)
            if len(self._times) > self.capacity:
                self._times.popitem(last=False)
            self._cond.notify_all()

    def read(self, table: str, event: ChangeEvent) -> ChangeEvent:
        """Capture read the local change ``event``: recorded, and returned with the version it replaced as
        :attr:`~sluice.cdc.events.ChangeEvent.base` (its ``before`` image's, or the key's last delete for an
        insert) when that is known."""
        if event.op not in ("c", "u", "d"):
            return event
        replaced = self.version_of(table, event.key, same_image(None if event.op == "c" else event.before))
        self.record(table, event.key, event.source.commit_ts_us, event.after, event.op == "d", version_id(event))
        return msgspec.structs.replace(event, base=replaced) if replaced else event

    def caught_up(self, wall_us: int) -> None:
        """Capture has read everything committed before ``wall_us``."""
        with self._cond:
            self.read_up_to_us = max(self.read_up_to_us, wall_us)
            self._cond.notify_all()

    def _find(self, entry: tuple[str, str], matches: RowMatch | None) -> tuple[int, dict[str, Any] | None, bool, str] | None:
        versions = self._times.get(entry)
        if not versions:
            return None
        if matches is None:
            return versions[-1]
        for index in range(len(versions) - 1, -1, -1):
            row, deleted = versions[index][1], versions[index][2]
            if (row is None and not deleted) or matches(None if deleted else row):
                return versions[index]
        return None

    def lookup(
        self,
        table: str,
        key: list[Any],
        wait_s: float = WAIT_S,
        asked_us: int | None = None,
        matches: RowMatch | None = None,
    ) -> int | None:
        """The commit time (µs) of ``key``'s version that ``matches`` (default: its last version), waiting up
        to ``wait_s`` seconds for capture to read it or to pass ``asked_us`` (wall µs, default now); None if
        unknown."""
        asked_us = time.time_ns() // 1000 if asked_us is None else asked_us
        deadline = time.monotonic() + wait_s
        entry = (table, key_text(key))
        with self._cond:
            while (found := self._find(entry, matches)) is None and not self._passed(entry, matches, asked_us):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return None if found is None else found[0]

    def last_local(self, table: str, key: list[Any], other_side: str) -> int | None:
        """The commit time of ``key``'s newest version read by this side's capture (not written by the apply
        from ``other_side``, whose times come from another clock), None if none."""
        prefix = f"{other_side}:"
        with self._cond:
            versions = self._times.get((table, key_text(key))) or []
            for index in range(len(versions) - 1, -1, -1):
                if versions[index][3] and not versions[index][3].startswith(prefix):
                    return versions[index][0]
            return None

    def version_of(self, table: str, key: list[Any], matches: RowMatch) -> str:
        """The id of ``key``'s newest recorded version that ``matches``, ``""`` if none (no waiting)."""
        with self._cond:
            found = self._find((table, key_text(key)), matches)
            return "" if found is None else found[3]

    def settled(self, table: str, key: list[Any], asked_us: int, matches: RowMatch | None = None) -> bool:
        """Whether waiting could not change :meth:`lookup`'s answer: the version is known, or capture has read
        everything committed before ``asked_us`` (wall µs)."""
        entry = (table, key_text(key))
        with self._cond:
            return self._find(entry, matches) is not None or self._passed(entry, matches, asked_us)

    def _passed(self, entry: tuple[str, str], matches: RowMatch | None, asked_us: int) -> bool:
        """Capture passed ``asked_us``, and a row with changes read before it is not one capture has yet to read:
        the time capture reports it read up to is an estimate (PostgreSQL may decode a commit later than an
        idle read suggests), so a key with known versions none of which is the row waits for it (until the
        deadline)."""
        if self.read_up_to_us < asked_us:
            return False
        return matches is None or matches is _never or not self._times.get(entry)


def _never(row: dict[str, Any] | None) -> bool:
    """Matches no row: a lookup with it waits until capture passed the time asked."""
    return False


def same_image(image: dict[str, Any] | None) -> RowMatch:
    """A :data:`RowMatch` for canonical images: equal on the columns both have (None: both no row)."""

    def matches(row: dict[str, Any] | None) -> bool:
        if image is None or row is None:
            return image is None and row is None
        return all(row[column] == value for column, value in image.items() if column in row)

    return matches


class LocalVersionPending(SyncError):
    """A newer-wins resolver run under :func:`lookups_outside` lacks the local commit time of some keys that
    the target side's capture has not read yet: roll the apply transaction back, :meth:`wait`, run it again.

    ``missing``: ``(target side's source table, key, the current row's matcher)`` triples; ``asked_us``: wall
    µs of the resolver's call (capture must pass it); ``wait_s``: seconds to wait at most."""

    def __init__(
        self, versions: LocalVersions, missing: list[tuple[str, list[Any], RowMatch | None]], asked_us: int, wait_s: float
    ) -> None:
        first_table, first_key, _ = missing[0]
        super().__init__(
            f"table {first_table}: the local commit time of key {key_text(first_key)} (and {len(missing) - 1} more) "
            "is not read by capture yet"
        )
        self.versions, self.missing, self.asked_us, self.wait_s = versions, missing, asked_us, wait_s

    def wait(self) -> None:
        """Wait, with no transaction open, until capture read the missing versions (or passed ``asked_us``),
        at most ``wait_s`` in all; the batch's next run then decides with what is known."""
        deadline = time.monotonic() + self.wait_s
        for table, key, matches in self.missing:
            self.versions.lookup(table, key, max(0.0, deadline - time.monotonic()), self.asked_us, matches)
        waited = _outside.get()
        if waited is not None:
            waited.update((table, key_text(key)) for table, key, _ in self.missing)


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


class ConflictResolver:
    """The :data:`~sluice.cdc.base.Resolver` of one way of a both-ways sync: called with a batch's conflicts,
    it answers for each whether the incoming change is applied.

    ``incoming_is_source``: the changes come from the declared ``source`` side. ``newer-wins`` under
    :func:`lookups_outside` raises :class:`LocalVersionPending` for local times capture has not read yet (once
    per key); elsewhere it waits up to ``wait_s`` seconds for each in place.

    ``versions``: the row versions of the target side (:class:`LocalVersions`), which apply also reads (a
    change's :attr:`~sluice.cdc.events.ChangeEvent.base` against the current row's version) and records
    into (:meth:`taken`); ``target_table_of`` maps an incoming event's table to the name they are kept by."""

    def __init__(
        self,
        policy: ConflictPolicy,
        incoming_is_source: bool,
        target_table_of: Callable[[str], str],
        versions: LocalVersions | None,
        log: ConflictLog,
        direction: str,
        wait_s: float = WAIT_S,
    ) -> None:
        self.policy, self.incoming_is_source, self.target_table_of = policy, incoming_is_source, target_table_of
        self.versions, self.log, self.direction, self.wait_s = versions, log, direction, wait_s

    def base_conflicts(self, event: ChangeEvent, matches: RowMatch) -> bool:
        """Whether ``event`` replaced another version than the target's current row (``matches`` finds it).
        False when the current row's version is unknown (then the images decide). A known current version and
        an unknown base conflict: the incoming side never had that version (it records what apply writes)."""
        if self.versions is None:
            return False
        current = self.versions.version_of(self.target_table_of(event.table), event.key, matches)
        return bool(current) and current != event.base

    def settle(self, keys: list[tuple[str, list[Any]]]) -> None:
        """Under :func:`lookups_outside`: before deciding whether inserts into absent rows of ``keys`` (incoming
        table, key) conflict, let the target side's capture read everything committed until now, so a local
        delete of such a key is known (an absent row gives no image to wait for). Raises
        :class:`LocalVersionPending` once per key and batch; elsewhere does nothing."""
        waited = _outside.get()
        local = self.versions
        if local is None or waited is None or not keys:
            return
        asked_us = time.time_ns() // 1000
        if local.read_up_to_us >= asked_us:
            return
        missing: list[tuple[str, list[Any], RowMatch | None]] = []
        for table, key in keys:
            target = self.target_table_of(table)
            if (target, key_text(key)) not in waited:
                missing.append((target, key, _never))
        if missing:
            raise LocalVersionPending(local, missing, asked_us, self.wait_s)

    def taken(self, event: ChangeEvent) -> None:
        """``event`` is written into the target: record its version there."""
        if self.versions is not None:
            after = None if event.op == "d" else event.after
            table = self.target_table_of(event.table)
            self.versions.record(table, event.key, event.source.commit_ts_us, after, event.op == "d", version_id(event))

    def _pending(self, conflicts: list[Conflict]) -> None:
        """Under :func:`lookups_outside`: raise :class:`LocalVersionPending` for the keys to wait for first."""
        waited = _outside.get()
        local = self.versions
        if self.policy != "newer-wins" or local is None or waited is None:
            return
        asked_us = time.time_ns() // 1000
        missing = []
        for conflict in conflicts:
            table, key = self.target_table_of(conflict.event.table), conflict.event.key
            if (table, key_text(key)) not in waited and not local.settled(table, key, asked_us, conflict.matches):
                missing.append((table, key, conflict.matches))
        if missing:
            raise LocalVersionPending(local, missing, asked_us, self.wait_s)

    def _decide(self, conflict: Conflict) -> tuple[bool, str]:
        incoming_is_source = self.incoming_is_source
        if self.policy == "source-wins":
            return incoming_is_source, "source-wins"
        if self.policy == "target-wins":
            return not incoming_is_source, "target-wins"
        waited_outside = _outside.get() is not None  # then _pending() left only what waiting cannot change
        table = self.target_table_of(conflict.event.table)
        wait = 0.0 if waited_outside else self.wait_s
        local = self.versions
        local_ts = local.lookup(table, conflict.event.key, wait, matches=conflict.matches) if local else None
        incoming_ts = conflict.event.source.commit_ts_us
        if local_ts is None and local is not None:
            # The current row is a local change capture has not read yet: newer than the key's versions it read.
            last_read = local.last_local(table, conflict.event.key, conflict.event.source.name)
            if last_read is not None and incoming_ts < last_read:
                return False, "newer-wins: local version not read yet, newer than the last one read"
        if local_ts is None:
            return incoming_is_source, "newer-wins: local time unknown, source side wins"
        if incoming_ts != local_ts:
            return incoming_ts > local_ts, "newer-wins"
        return incoming_is_source, "newer-wins: equal times, source side wins"

    def __call__(self, conflicts: list[Conflict]) -> list[bool]:
        self._pending(conflicts)
        verdicts = []
        for conflict in conflicts:
            applied, rule = self._decide(conflict)
            self.log.record(self.direction, conflict, applied, rule)
            verdicts.append(applied)
        return verdicts
