"""Which tables a DDL statement from the binlog touches, and what kind of schema change it made.

The binlog carries DDL as the statement text (a QUERY event). :func:`parse_ddl` names the statement's kind
and tables; after capture re-reads the table from ``information_schema``, :func:`classify` compares the
old and new :class:`~sluice.cdc.events.TableSchema` and names the change (``add_column``, ``drop_column``,
``rename_column``, ``alter_column``, ``other``), taking column renames from the statement (``RENAME COLUMN
a TO b``, ``CHANGE [COLUMN] a b ...``) since the catalog cannot tell a rename from a drop and an add.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sluice.cdc.events import TableSchema

_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_QUALIFIED = rf"({_NAME}(?:\s*\.\s*{_NAME})?)"
_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*\n|#[^\n]*\n", re.S)
_ALTER = re.compile(rf"^ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?{_QUALIFIED}(.*)$", re.I | re.S)
_CREATE = re.compile(rf"^CREATE\s+(?:OR\s+REPLACE\s+)?(TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QUALIFIED}", re.I | re.S)
_DROP = re.compile(r"^DROP\s+(TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?(.*)$", re.I | re.S)
_RENAME = re.compile(r"^RENAME\s+TABLES?\s+(.*)$", re.I | re.S)
_TRUNCATE = re.compile(rf"^TRUNCATE\s+(?:TABLE\s+)?{_QUALIFIED}", re.I | re.S)
_RENAME_TO = re.compile(rf"\bRENAME\s+(?:TO\s+|AS\s+)?{_QUALIFIED}\s*(?:,|$)", re.I)
_RENAME_COLUMN = re.compile(rf"\bRENAME\s+COLUMN\s+({_NAME})\s+TO\s+({_NAME})", re.I)
_CHANGE_COLUMN = re.compile(rf"\bCHANGE\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?({_NAME})\s+({_NAME})", re.I)
_DROP_COLUMN = re.compile(rf"(?:^|,)\s*DROP\s+(COLUMN\s+)?(?:IF\s+EXISTS\s+)?({_NAME})", re.I)
_NOT_COLUMNS = frozenset({"primary", "index", "key", "foreign", "constraint", "check", "partition", "system", "period"})


@dataclass(slots=True)
class Ddl:
    """A DDL statement: ``kind`` (``alter``, ``create``, ``drop``, ``rename``, ``truncate``) and its tables.

    ``tables`` are ``(namespace, name)``; ``renames`` are ``(old, new)`` table pairs; ``columns`` maps renamed
    columns old -> new (ALTER); ``dropped``: the columns an ALTER drops."""

    kind: str
    tables: list[tuple[str, str]] = field(default_factory=list)
    renames: list[tuple[tuple[str, str], tuple[str, str]]] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def split_name(text: str, database: str) -> tuple[str, str]:
    """``db.t`` / `` `db`.`t` `` / ``t`` (in ``database``) -> ``(db, t)``."""
    parts = re.findall(_NAME, text)
    if len(parts) >= 2:
        return unquote(parts[0]), unquote(parts[1])
    return database, unquote(parts[0])


def parse_ddl(statement: str, database: str) -> Ddl | None:
    """The table DDL in ``statement`` (run in default ``database``), or ``None`` for anything else (temporary tables too).

    >>> parse_ddl("ALTER TABLE t RENAME COLUMN a TO b", "hr").columns
    {'a': 'b'}
    >>> parse_ddl("ALTER TABLE t DROP COLUMN a, DROP b, DROP PRIMARY KEY, DROP INDEX i", "hr").dropped
    ['a', 'b']
    """
    text = _COMMENTS.sub(" ", statement + "\n").strip()
    if match := _ALTER.match(text):
        table = split_name(match.group(1), database)
        rest = match.group(2)
        ddl = Ddl("alter", [table])
        for found in _RENAME_COLUMN.finditer(rest):
            ddl.columns[unquote(found.group(1))] = unquote(found.group(2))
        for found in _CHANGE_COLUMN.finditer(rest):
            old, new = unquote(found.group(1)), unquote(found.group(2))
            if old != new:
                ddl.columns[old] = new
        for found in _DROP_COLUMN.finditer(rest):
            if found.group(1) or found.group(2).lower() not in _NOT_COLUMNS:
                ddl.dropped.append(unquote(found.group(2)))
        if (renamed := _RENAME_TO.search(rest)) and not re.match(r"(?i)(COLUMN|INDEX|KEY)\b", renamed.group(1)):
            ddl.kind = "rename"
            ddl.renames.append((table, split_name(renamed.group(1), table[0])))
        return ddl
    if match := _CREATE.match(text):
        return None if match.group(1) else Ddl("create", [split_name(match.group(2), database)])
    if match := _DROP.match(text):
        if match.group(1):
            return None
        names = re.sub(r"\s+(RESTRICT|CASCADE)\s*$", "", match.group(2), flags=re.I)
        return Ddl("drop", [split_name(part, database) for part in _split_list(names)])
    if match := _RENAME.match(text):
        ddl = Ddl("rename")
        for pair in _split_list(match.group(1)):
            old, new = re.split(r"(?i)\s+TO\s+", pair, maxsplit=1)
            ddl.renames.append((split_name(old, database), split_name(new, database)))
        ddl.tables = [old for old, _ in ddl.renames]
        return ddl
    if match := _TRUNCATE.match(text):
        return Ddl("truncate", [split_name(match.group(1), database)])
    return None


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in re.split(r",(?=(?:[^`]*`[^`]*`)*[^`]*$)", text) if part.strip()]


def classify(old: TableSchema | None, new: TableSchema, renamed: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``(change kind, column renames)`` between ``old`` and ``new``: rename_column, drop_column, add_column,
    alter_column (a type, nullability or key change), or other (nothing visible changed).

    A rename of the statement (``renamed``) counts whenever ``new`` has the new name and not the old one, even
    when ``old`` has the new name already: ``old`` is the schema the stream knows, which for the first DDL after a
    restart is the catalog read at start, after a DDL made while the sync was stopped. Dropped from the change, the
    rename left apply to drop the target's column and add the new one empty."""
    if old is None:
        return "create", {}
    old_columns = {column.name: column for column in old.columns}
    new_columns = {column.name: column for column in new.columns}
    renames = {a: b for a, b in renamed.items() if b in new_columns and a not in new_columns}
    if renames:
        return "rename_column", renames
    if set(old_columns) - set(new_columns):
        return "drop_column", {}
    if set(new_columns) - set(old_columns):
        return "add_column", {}
    if any(old_columns[name] != new_columns[name] for name in new_columns) or old.key != new.key:
        return "alter_column", {}
    return "other", {}
