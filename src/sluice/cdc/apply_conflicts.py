"""Both-ways conflicts on a SQL target (:class:`ConflictSteps`, part of :class:`~sluice.cdc.apply_base.SqlApply`).

A change conflicts when the target row it meets is not the one its source saw: an update or delete whose
``before`` image differs from the target's current row (or finds none), an insert that finds a different row.
The target rows of a batch's keys are read in one query; the conflicts go to the sync's resolver
(``newer-wins``, ``source-wins``, ``target-wins``: :mod:`sluice.cdc.conflicts`), every conflict is recorded in
``<namespace>.conflicts`` with both versions, and the losing changes are dropped from the batch. The model is
SymmetricDS's (conflict detection on the old row image, resolution by policy).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from sluice.cdc.apply_common import Key, same_value, target_columns
from sluice.cdc.base import ApplyResult, Conflict, Resolver, TableRef
from sluice.cdc.conflicts import ConflictResolver
from sluice.cdc.events import ChangeEvent, Column

_json_encoder = msgspec.json.Encoder(enc_hook=str)


def to_json(value: Any) -> str:
    """JSON text of an event or a row (bytes as base64, Decimal/datetime/timedelta as text)."""
    return _json_encoder.encode(value).decode()


def old_key(event: ChangeEvent, key_columns: Sequence[str]) -> Key:
    """The key a change found in the target: the ``before`` image's for an update, else ``event.key``."""
    before = event.before
    if event.op == "u" and before is not None and key_columns and all(column in before for column in key_columns):
        return tuple(before[column] for column in key_columns)
    return tuple(event.key)


class ConflictSteps(ABC):
    """Finds and resolves the conflicts of a batch; the dialect reads the current rows and records conflicts."""

    @abstractmethod
    def _current_rows(self, table: TableRef, keys: list[Key], columns: list[Column] | None = None) -> dict[Key, dict[str, Any]]:
        """The target rows of ``keys`` (column -> driver value of ``columns``, all by default) found, locked for
        the transaction, in one query."""

    @abstractmethod
    def _record(self, table: str, sql_table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into ``<namespace>.<sql_table>`` in the batch's transaction."""

    def _resolve(self, table: TableRef, events: list[ChangeEvent], resolver: Resolver, result: ApplyResult) -> list[ChangeEvent]:
        """Conflicts of the batch decided by ``resolver``; the events left to apply.

        Each key's changes are taken in order against the target's current row, read once with a lock
        (:meth:`_current_rows`): a change that matches it (or follows a change of the batch that was taken)
        is taken; one that does not is a conflict, and its loss drops that change only. The key's next change
        meets the same current row again: a later version from the incoming side may win where an earlier one
        lost (newer-wins), and one written after the incoming side received the current row matches it. One
        resolver call per round, a round holding the next undecided conflict of each key."""
        key_columns = table.source.key
        chains: dict[Key, list[int]] = {}
        for index, event in enumerate(events):
            if event.op in ("c", "u", "d"):
                chains.setdefault(old_key(event, key_columns), []).append(index)
        if not chains:
            return events
        current = self._current_rows(table, list(chains))
        types = {column.name: column.type for column in target_columns(table)}
        masked = set(table.mask)
        versions = resolver if isinstance(resolver, ConflictResolver) else None
        if versions is not None:  # an insert into an absent row: the key's last delete here must be known
            absent = [chain for key, chain in chains.items() if key not in current and any(events[i].op == "c" for i in chain)]
            versions.settle([(events[chain[0]].table, events[chain[0]].key) for chain in absent])
        dropped: set[int] = set()
        cursor = dict.fromkeys(chains, 0)
        while cursor:
            round_: list[tuple[Key, Conflict]] = []
            for key in list(cursor):
                event, row = events[chains[key][cursor[key]]], current.get(key)
                matches = self._matcher(row, types, masked)
                if not self._conflicts(event, row, types, masked) and not (
                    versions is not None and versions.base_conflicts(event, matches)
                ):
                    del cursor[key]  # taken: the key's later changes of the batch follow from it
                    continue
                round_.append((key, Conflict(event, row, matches)))
            if not round_:
                break
            decisions = resolver([conflict for _, conflict in round_])
            records = []
            for (key, conflict), applied in zip(round_, decisions, strict=True):
                if applied:
                    del cursor[key]
                else:
                    dropped.add(chains[key][cursor[key]])
                    cursor[key] += 1
                    if cursor[key] >= len(chains[key]):
                        del cursor[key]
                records.append((to_json(conflict.event.key), to_json(conflict.event), to_json(conflict.current), bool(applied)))
            self._record(table.source.qualified, "conflicts", records)
            result.conflicts += len(round_)
        kept = [event for index, event in enumerate(events) if index not in dropped] if dropped else events
        if versions is not None:
            for chain in chains.values():
                last = [index for index in chain if index not in dropped]
                if last:
                    versions.taken(events[last[-1]])
        return kept

    def _conflicts(self, event: ChangeEvent, row: dict[str, Any] | None, types: dict[str, str], masked: set[str]) -> bool:
        """Whether ``event`` expected another target row than ``row``: an insert finding a different row, an
        update or delete finding none or one unlike its ``before`` image."""
        if event.op == "c":
            return row is not None and not self._matches(event.after or {}, row, types, masked)
        return row is None or not self._matches(event.before or {}, row, types, masked)

    def _matcher(
        self, row: dict[str, Any] | None, types: dict[str, str], masked: set[str]
    ) -> Callable[[dict[str, Any] | None], bool]:
        """Whether a canonical row image (None: no row) is ``row``, the target's current row."""

        def matches(image: dict[str, Any] | None) -> bool:
            if image is None or row is None:
                return image is None and row is None
            return self._matches(image, row, types, masked)

        return matches

    @staticmethod
    def _matches(image: dict[str, Any], row: dict[str, Any], types: dict[str, str], masked: set[str]) -> bool:
        for column, value in image.items():
            if column in types and column in row and not same_value(types[column], value, row[column], column in masked):
                return False
        return True
