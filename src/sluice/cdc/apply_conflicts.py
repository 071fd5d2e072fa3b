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
from collections.abc import Sequence
from typing import Any

import msgspec

from sluice.cdc.apply_common import Key, same_value, target_columns
from sluice.cdc.base import ApplyResult, Conflict, Resolver, TableRef
from sluice.cdc.events import ChangeEvent

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
    def _current_rows(self, table: TableRef, keys: list[Key]) -> dict[Key, dict[str, Any]]:
        """The target rows of ``keys`` (column -> driver value), in one query."""

    @abstractmethod
    def _record(self, table: str, sql_table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` into ``<namespace>.<sql_table>`` in the batch's transaction."""

    def _resolve(self, table: TableRef, events: list[ChangeEvent], resolver: Resolver, result: ApplyResult) -> list[ChangeEvent]:
        """Conflicts of the batch decided by ``resolver``; the events left to apply."""
        key_columns = table.source.key
        first: dict[Key, ChangeEvent] = {}
        for event in events:
            if event.op in ("c", "u", "d"):
                first.setdefault(old_key(event, key_columns), event)
        if not first:
            return events
        current = self._current_rows(table, list(first))
        types = {column.name: column.type for column in target_columns(table)}
        masked = set(table.mask)
        conflicts: list[Conflict] = []
        for key, event in first.items():
            row = current.get(key)
            image = event.after if event.op == "c" else event.before
            if event.op == "c":
                differs = row is not None and not self._matches(image or {}, row, types, masked)
            else:
                differs = row is None or not self._matches(image or {}, row, types, masked)
            if differs:
                conflicts.append(Conflict(event, row))
        if not conflicts:
            return events
        decisions = resolver(conflicts)
        losers: set[Key] = set()
        records = []
        for conflict, applied in zip(conflicts, decisions, strict=True):
            if not applied:
                losers.add(old_key(conflict.event, key_columns))
                losers.add(tuple(conflict.event.key))
            records.append((to_json(conflict.event.key), to_json(conflict.event), to_json(conflict.current), bool(applied)))
        self._record(table.source.qualified, "conflicts", records)
        result.conflicts += len(conflicts)
        return [
            event
            for event in events
            if event.op in ("r", "t") or (tuple(event.key) not in losers and old_key(event, key_columns) not in losers)
        ]

    @staticmethod
    def _matches(image: dict[str, Any], row: dict[str, Any], types: dict[str, str], masked: set[str]) -> bool:
        for column, value in image.items():
            if column in types and column in row and not same_value(types[column], value, row[column], column in masked):
                return False
        return True
