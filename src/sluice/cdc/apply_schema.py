"""Schema changes on a SQL target (:class:`SchemaSteps`, part of :class:`~sluice.cdc.apply_base.SqlApply`).

A :class:`~sluice.cdc.events.SchemaChange` from capture (add, widen, rename or drop a column, create a table) is
compared with the target table's columns as its catalog has them now and the difference is applied: columns
renamed, added (with the source's default), widened, dropped or kept nullable (``drop_columns``). What cannot
be applied without losing meaning (a key change, a narrowing type change) raises a table-level
:class:`~sluice.cdc.base.SyncError` whose message gives the way out (``sluice sync resync``).

A resync (``change == "resync"``, applied by :func:`~sluice.cdc.apply_partitioned.reset_target` to a target
table it just emptied) gives the table the source's schema whatever it takes: columns as above, narrowing
types included (no row is left to lose), and the primary key of the source (read from the target's catalog,
dropped and added again in place when it differs), so a key changed at the source no longer leaves the
target's old key behind (which refuses every upsert by the new key). In place rather than ``DROP`` and
``CREATE``: the table keeps its grants, indexes and publication membership (a both-ways PostgreSQL capture).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import msgspec

from sluice.cdc.apply_common import cannot_alter, default_clause, describe, target_narrows, widens
from sluice.cdc.base import SyncError, TableRef
from sluice.cdc.events import RESTART, Column, SchemaChange

log = logging.getLogger("sluice.cdc.apply")


class SchemaSteps(ABC):
    """Applies schema changes; the dialect gives the catalog read, the ``ALTER`` and ``CREATE`` statements."""

    @abstractmethod
    def _target_columns(self, table: TableRef) -> dict[str, str]:
        """Columns of the target table now, from its catalog: name -> type text (empty: no such table)."""

    @abstractmethod
    def _alter(self, table: TableRef, action: str, column: Column, other: str = "") -> None:
        """``add``, ``drop``, ``keep`` (make nullable), ``type`` (widen) a column, or ``rename`` it to ``other``."""

    @abstractmethod
    def _target_key(self, table: TableRef) -> list[str]:
        """The primary-key columns of the target table now, from its catalog, in key order (empty: none)."""

    @abstractmethod
    def _set_key(self, table: TableRef, key: Sequence[str], had_key: bool) -> None:
        """Drop the target table's primary key (when ``had_key``) and add ``key`` as the new one (when not empty)."""

    @abstractmethod
    def _create_table(self, table: TableRef) -> None:
        """Create the target table when missing (columns minus drop, mapped types, primary key)."""

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    def apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        """Rename, add, widen, drop (or keep) columns so the target matches ``change.schema``.

        Compared with the target table's columns as its catalog has them now (not with ``table.source``,
        the source schema read when the sync started, which already holds a DDL made while the sync was
        stopped): a target column missing from ``change.schema`` is dropped (``drop_columns: keep``: made
        nullable), a column whose target type differs from the one ``change.schema`` maps to is altered.
        Idempotent: a column already added, renamed or dropped is left alone. Raises :class:`SyncError`
        (``table`` set: the source table) for a key change, a column change that does not widen (:func:`widens`
        on the source columns, else :func:`target_narrows` on the target's type) and any error of the target
        database."""
        name = table.source.qualified
        try:
            self._apply_schema(table, change)
        except SyncError:
            self._rollback()
            raise
        except Exception as exc:
            self._rollback()
            raise SyncError(
                f"table {name}: the target refused schema change {change.change!r} ({change.ddl or 'no DDL text'}): "
                f"{str(exc).strip()}; change the target by hand, or run 'sluice sync resync PATH {name}'",
                table=name,
            ) from exc

    def _apply_schema(self, table: TableRef, change: SchemaChange) -> None:
        present = self._target_columns(table)
        if change.change == "create" or not present:
            self._create_table(_with_schema(table, change))
            self._commit()
            return
        if change.change in ("drop_table", "rename_table"):
            self._commit()
            return
        resync = change.change == "resync"
        if not resync and not self._same_key(table, change):
            raise cannot_alter(
                table,
                ",".join(change.schema.key) or "(key)",
                "primary key " + ",".join(table.source.key),
                "primary key " + ",".join(change.schema.key),
            )
        dropped = set(table.drop)
        old = {column.name: column for column in table.source.columns}
        new = {column.name: column for column in change.schema.columns}
        renamed = dict(change.renamed)
        # Only while the target drops what the source dropped: with drop_columns: keep, a target column gone from the
        # source may be one an earlier drop left there, whose old values must not fill a new column.
        if change.change == RESTART and table.drop_columns == "drop":
            columns = [(c.name, self._type_of(table, c)) for c in change.schema.columns if c.name not in dropped]
            for before, after in matched_renames(present, columns, self._same_type).items():
                log.warning(
                    "table %s: target column %s renamed %s: gone from the source and %s new at its place with its type "
                    "(a rename made while the sync was stopped)",
                    table.source.qualified,
                    before,
                    after,
                    after,
                )
                renamed.setdefault(before, after)
        for before, after in renamed.items():
            if before in present and after not in present and before not in dropped and after in new:
                self._alter(table, "rename", msgspec.structs.replace(new[after], name=before), after)
                present[after] = present.pop(before)
            if before in old:
                old[after] = msgspec.structs.replace(old.pop(before), name=after)
        gone = [name for name in present if name not in new and name not in dropped]
        for column in change.schema.columns:
            if column.name in dropped:
                continue
            if column.name not in present:
                if gone and not resync:
                    log.warning(
                        "table %s: column %s added to the target without values while %s %s: if it is %s renamed, "
                        "run 'sluice sync resync PATH %s' to copy the values",
                        table.source.qualified,
                        column.name,
                        ", ".join(gone),
                        "is dropped" if table.drop_columns == "drop" else "is kept",
                        " or ".join(gone),
                        table.source.qualified,
                    )
                self._alter(table, "add", column)
                continue
            previous = old.get(column.name)
            # The source column before the change when this run knew it (a change made while the sync was
            # stopped is already in table.source, so the target's type is the only "before" left). Compared
            # whole, before the target's type: a string's length and an ENUM's labels are no part of the
            # logical type, and a narrowing the target type does not show (ENUM -> text) still changed rows.
            if previous is not None and not resync and not widens(previous, column):
                raise cannot_alter(table, column.name, describe(previous), describe(column))
            wanted = self._type_of(table, column)
            if self._same_type(present[column.name], wanted):
                continue
            # The target's own type is the "before" a change made while the sync was stopped leaves: a narrowing
            # of it stops the table too (PostgreSQL's USING cast would truncate or round the rows silently).
            if not resync and target_narrows(present[column.name], wanted):
                raise cannot_alter(table, column.name, present[column.name], wanted)
            self._alter(table, "type", column)
        for column_name, target_type in present.items():
            if column_name not in new and column_name not in dropped:
                column = old.get(column_name) or Column(name=column_name, type="string", source_type=target_type)
                self._alter(table, "drop" if table.drop_columns == "drop" else "keep", column)
        if resync and (present_key := self._target_key(table)) != list(change.schema.key):
            self._set_key(table, change.schema.key, bool(present_key))
        self._commit()

    def _same_key(self, table: TableRef, change: SchemaChange) -> bool:
        """Whether ``change`` keeps the table's primary key: the key known before it with its columns renamed as
        ``change`` renames them (the target's key follows a column rename), or else the target's own key (a
        MariaDB/MySQL capture publishes the schema a TABLE_MAP gives, older than the one read at start: the
        key columns as the target still names them)."""
        key = list(change.schema.key)
        if key == [change.renamed.get(name, name) for name in table.source.key]:
            return True
        return bool(key) and key == self._target_key(table)

    def _default(self, table: TableRef, column: Column, dialect: str) -> str:
        """`` DEFAULT <literal>[ NOT NULL]`` for adding ``column`` (:func:`default_clause`; none for a masked column)."""
        return default_clause(column, dialect, masked=column.name in table.mask)

    def _same_type(self, target_type: str, wanted: str) -> bool:
        """Whether the catalog's type text ``target_type`` is the type ``wanted`` (as :meth:`_type_of` writes it)."""
        return target_type.lower() == wanted.lower()

    @abstractmethod
    def _type_of(self, table: TableRef, column: Column) -> str:
        """The target type of ``column`` in ``table`` (masked columns included)."""


def matched_renames(
    present: dict[str, str], wanted: list[tuple[str, str]], same_type: Callable[[str, str], bool]
) -> dict[str, str]:
    """Target columns the source no longer has, paired with source columns the target lacks: ``old -> new`` when the
    two are at the same place (after the same column both sides have, or both first) with the same type and neither
    has another such partner. ``present``: the target's columns in order, name -> type; ``wanted``: the source's
    columns the target gets, in order, ``(name, target type)``.

    >>> matched_renames({"id": "int", "name": "text", "n": "int"}, [("id", "int"), ("label", "text")], str.__eq__)
    {'name': 'label'}
    """
    names = {name for name, _ in wanted}
    common = names & set(present)

    def places(order: list[str]) -> dict[str, str]:
        anchor, out = "", {}
        for name in order:
            if name in common:
                anchor = name
            else:
                out[name] = anchor
        return out

    gone_at = places(list(present))
    came_at = places([name for name, _ in wanted])
    types = dict(wanted)
    pairs: dict[str, list[str]] = {}
    partners: dict[str, int] = {}
    for came, anchor in came_at.items():
        pairs[came] = [g for g, at in gone_at.items() if at == anchor and same_type(present[g], types[came])]
        for gone in pairs[came]:
            partners[gone] = partners.get(gone, 0) + 1
    return {found[0]: came for came, found in pairs.items() if len(found) == 1 and partners[found[0]] == 1}


def _with_schema(table: TableRef, change: SchemaChange) -> TableRef:
    return TableRef(
        change.schema,
        table.target_namespace,
        table.target_name,
        table.drop,
        table.mask,
        table.no_key,
        table.drop_columns,
    )
