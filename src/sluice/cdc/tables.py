"""Which tables a sync copies, under which target names, without which columns: ``syncs:`` -> :class:`TableRef`.

``tables:`` and ``exclude:`` entries are names or glob patterns (:mod:`fnmatch`: ``*``, ``?``, ``[...]``),
matched against the table's name, or against ``namespace.name`` when the entry holds a dot. ``rename:``
and ``columns:`` are keyed by the source table, by name or ``namespace.name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from sluice.cdc.base import Capture, TableRef
from sluice.cdc.config import SyncSettings
from sluice.cdc.events import SchemaChange, TableSchema
from sluice.errors import ConfigError, did_you_mean
from sluice.project.model import Origin
from sluice.urls import connection_scheme


class TableProblem(NamedTuple):
    """A problem of a sync's table rules, and the place in the sync that causes it, for
    :meth:`~sluice.project.model.Origin.line_at`: ``("tables", 2)`` (its third ``tables:`` entry),
    ``("rename", "employes")``, ``("columns", "employes", "mask", 0)``."""

    message: str
    at: tuple[str | int, ...]


def located(problems: Sequence[TableProblem], origin: Origin | None) -> list[ConfigError]:
    """``problems`` as :class:`~sluice.errors.ConfigError` at the line of the entry at fault in ``origin``'s file
    (a problem at ``()``, at the sync's own line), in the order of their lines; without an origin (a runtime built
    from settings alone), their plain messages."""
    if origin is None:
        return [ConfigError(problem.message) for problem in problems]
    found = [ConfigError(problem.message, origin.file, origin.line_at(*problem.at)) for problem in problems]
    return sorted(found, key=lambda problem: problem.line or 0)


def matches(pattern: str, table: TableSchema) -> bool:
    """``pattern`` (a name or glob) names ``table``: against ``namespace.name`` if it has a dot, else the name."""
    subject = table.qualified if "." in pattern else table.name
    return fnmatchcase(subject, pattern)


def selected(settings: SyncSettings, table: TableSchema) -> bool:
    """``table`` is in ``tables:`` and not in ``exclude:``."""
    return any(matches(p, table) for p in settings.tables) and not any(matches(p, table) for p in settings.exclude)


def default_target_namespace(url: str) -> str:
    """A target URL's namespace: a MySQL URL's database, ``public`` for PostgreSQL."""
    if connection_scheme(url) in ("mysql", "mariadb"):
        return unquote(urlsplit(url).path.lstrip("/")) or "mysql"
    return "public"


def _lookup(mapping: Mapping[str, object], table: TableSchema) -> str | None:
    """The key of ``mapping`` naming ``table`` (qualified first)."""
    for key in (table.qualified, table.name):
        if key in mapping:
            return key
    return None


def table_ref(settings: SyncSettings, table: TableSchema, target_namespace: str) -> TableRef:
    """The :class:`TableRef` of one selected ``table``."""
    rename_key = _lookup(settings.rename, table)
    columns_key = _lookup(settings.columns, table)
    rules = settings.columns[columns_key] if columns_key is not None else None
    return TableRef(
        source=table,
        target_namespace=target_namespace,
        target_name=settings.rename[rename_key] if rename_key is not None else table.name,
        drop=tuple(rules.drop) if rules else (),
        mask=tuple(rules.mask) if rules else (),
        no_key=settings.no_key,
        drop_columns=settings.drop_columns,
    )


def announced_ref(settings: SyncSettings, change: SchemaChange, target_namespace: str) -> TableRef | None:
    """The :class:`TableRef` of a table capture found while running (``change``, the first schema it saw of a table
    it did not know), or None when the sync leaves it out (dropped, not matching ``tables:``, excluded)."""
    if change.change == "drop_table" or not selected(settings, change.schema):
        return None
    return table_ref(settings, change.schema, target_namespace)


def _entry(settings: SyncSettings, table: TableSchema) -> tuple[str | int, ...]:
    """The first ``tables:`` entry that selects ``table`` (a pattern's, for a table found through one)."""
    return next((("tables", index) for index, p in enumerate(settings.tables) if matches(p, table)), ("tables",))


def _rule(settings: SyncSettings, what: str, table: TableSchema) -> tuple[str | int, ...]:
    """``table``'s key in ``rename:`` or ``columns:`` (``what``), else its ``tables:`` entry."""
    key = _lookup(settings.rename if what == "rename" else settings.columns, table)
    return (what, key) if key is not None else _entry(settings, table)


def resolve_tables(
    settings: SyncSettings, available: Sequence[TableSchema], target_namespace: str
) -> tuple[list[TableRef], list[TableProblem]]:
    """The tables of ``available`` the sync copies, and every problem of its table rules (one line each), with
    the entry that causes it.

    Problems: an entry of ``tables:`` that matches nothing, a ``rename:``/``columns:`` key naming no selected
    table, a dropped or masked column the table lacks, a key column dropped, a table without a primary key under
    ``no_key: refuse``, two tables renamed to the same target.
    """
    problems: list[TableProblem] = []
    refs: list[TableRef] = []
    names = ", ".join(sorted(t.qualified for t in available)[:20]) or "none"
    for index, pattern in enumerate(settings.tables):
        if not any(matches(pattern, t) for t in available):
            close = did_you_mean(pattern, [t.qualified if "." in pattern else t.name for t in available])
            message = (
                f"sync '{settings.name}': tables entry {pattern!r} matches no table of the source (tables: {names}); "
                "fix the name or pattern" + (f".{close}" if close else "")
            )
            problems.append(TableProblem(message, ("tables", index)))
    targets: dict[str, str] = {}
    for table in available:
        if not selected(settings, table):
            continue
        ref = table_ref(settings, table, target_namespace)
        label = f"sync '{settings.name}': table {table.qualified}"
        if not table.key and settings.no_key == "refuse":
            problems.append(
                TableProblem(
                    f"{label} has no primary key; add one, or set no_key: insert-only or full-row, or exclude the table",
                    _entry(settings, table),
                )
            )
        rules = _rule(settings, "columns", table)
        for what, cols in (("drop", ref.drop), ("mask", ref.mask)):
            for index, col in enumerate(cols):
                if table.column(col) is None:
                    known = ", ".join(c.name for c in table.columns)
                    message = f"{label}: columns {what} names unknown column {col!r} (columns: {known})"
                    problems.append(TableProblem(message, (*rules, what, index)))
                elif what == "drop" and col in table.key:
                    message = f"{label}: columns drop names key column {col!r}; a key column must be copied"
                    problems.append(TableProblem(message, (*rules, what, index)))
        other = targets.setdefault(ref.target_qualified, table.qualified)
        if other != table.qualified:
            message = f"{label} and {other} both go to {ref.target_qualified}; rename one of them"
            problems.append(TableProblem(message, _rule(settings, "rename", table)))
        refs.append(ref)
    chosen = [r.source for r in refs]
    for what, mapping in (("rename", settings.rename), ("columns", settings.columns)):
        for key in mapping:
            if not any(key in (t.name, t.qualified) for t in chosen):
                synced = ", ".join(sorted(t.qualified for t in chosen)[:20]) or "none"
                close = did_you_mean(key, [t.qualified if "." in key else t.name for t in chosen])
                message = (
                    f"sync '{settings.name}': {what} names {key!r}, which is not one of the synced tables ({synced}); "
                    f"fix the name, add the table to tables:, or remove the entry{'.' + close if close else ''}"
                )
                problems.append(TableProblem(message, (what, key)))
    if settings.direction == "both":
        for ref in refs:
            if ref.drop or ref.mask:
                message = (
                    f"sync '{settings.name}': table {ref.source.qualified} drops or masks columns, which a both-ways "
                    "sync cannot write back; remove its columns: rules or use direction: one-way"
                )
                problems.append(TableProblem(message, _rule(settings, "columns", ref.source)))
    return refs, problems


def unused_excludes(settings: SyncSettings, available: Sequence[TableSchema]) -> list[TableProblem]:
    """A note for each ``exclude:`` entry that matches none of the tables ``tables:`` selects among ``available``:
    harmless (it leaves nothing out), but usually a typo that lets through the table it meant to leave out."""
    chosen = [t for t in available if any(matches(p, t) for p in settings.tables)]
    names = ", ".join(sorted(t.qualified for t in chosen)[:20]) or "none"
    return [
        TableProblem(
            f"sync '{settings.name}': exclude pattern {pattern!r} matches no table that tables: selects ({names}), so "
            "it leaves nothing out; fix the name or pattern, or remove it",
            ("exclude", index),
        )
        for index, pattern in enumerate(settings.exclude)
        if not any(matches(pattern, t) for t in chosen)
    ]


def reverse_ref(ref: TableRef, target_table: TableSchema) -> TableRef:
    """The other direction of a both-ways table: read ``target_table`` (``ref``'s target), write ``ref``'s source."""
    return TableRef(
        source=target_table,
        target_namespace=ref.source.namespace,
        target_name=ref.source.name,
        no_key=ref.no_key,
        drop_columns=ref.drop_columns,
    )


class SideCheck(NamedTuple):
    """What :func:`capture_problems` found on one side of a sync."""

    problems: list[TableProblem]
    """What stops the capture: the server's (at ``()``, the sync's line), then the table rules'."""
    notes: list[TableProblem]
    """What does not stop it but is likely a mistake (an ``exclude:`` entry that leaves nothing out)."""
    refs: list[TableRef]
    namespace: str
    """The target namespace."""


def capture_problems(settings: SyncSettings, urls: Mapping[str, str], side: str, capture: Capture) -> SideCheck:
    """What stops ``side``'s capture before it starts, the tables it copies and what to note.

    Server problems are the capture's own checks (:meth:`Capture.check`: binlog format, ``wal_level``,
    privileges); table problems, for the sync's ``source`` side, its ``tables:`` entries resolved against the
    tables the source lists (nothing matched, no key under ``no_key: refuse``), each with the entry at fault
    (:func:`resolve_tables`); notes, its ``exclude:`` entries that leave nothing out (:func:`unused_excludes`).
    ``sluice sync`` and ``sluice validate --live`` both ask this."""
    server = [TableProblem(f"sync '{settings.name}': source {side}: {problem}", ()) for problem in capture.check()]
    namespace = settings.target_namespace or default_target_namespace(urls[settings.target])
    if side != settings.source:
        return SideCheck(server, [], [], namespace)
    available = capture.list_tables()
    refs, tables = resolve_tables(settings, available, namespace)
    return SideCheck(server + tables, unused_excludes(settings, available), refs, namespace)
