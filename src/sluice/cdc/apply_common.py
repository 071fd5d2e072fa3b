"""What both apply plugins share: logical types, net effect of a batch, masking, value comparison.

* :func:`parse_type` reads a logical type (``decimal(12,2)``, ``timestamp(6)``, ``uint64``) of
  :mod:`sluice.cdc.events`; :func:`pg_type` and :func:`mysql_type` give the target column type
  (the maps are in ``docs/cdc/apply.md``); :func:`widens` says whether a type change can be applied in place.
* :func:`net_effect` reduces a batch of row changes of one table to what it does per key: the last image
  wins, an insert then a delete is a delete, an update that changes the key deletes the old key and
  upserts the new one, a truncate splits the batch into :class:`Segment`s applied in order. Unchanged
  (TOASTed) columns of an update are filled from an earlier image of the same key in the batch or from the
  update's whole old image (REPLICA IDENTITY FULL), else kept in the target: read from the key's own row, or,
  after a key change, from the row of the old key (:attr:`Upsert.origin`). The idea is the "compaction" of
  Debezium's JDBC sink and pglogical's batch apply; it is what lets one ``INSERT ... ON CONFLICT`` per batch
  be correct.
* :func:`mask_values` turns a column's values into the hex SHA-256 of their text.
* :func:`same_value` compares an event's canonical value with the value a target returned (conflicts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sluice.cdc.base import SyncError, TableRef
from sluice.cdc.events import ChangeEvent, Column

_TYPE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64, "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Key = tuple[Any, ...]


def parse_type(logical: str) -> tuple[str, tuple[int, ...]]:
    """``"decimal(12,2)"`` -> ``("decimal", (12, 2))``; ``"string"`` -> ``("string", ())``.

    Raises :class:`ValueError` for text that is not a logical type."""
    match = _TYPE.match(logical.lower())
    if match is None:
        raise ValueError(f"not a logical type: {logical!r}")
    args = tuple(int(group) for group in match.groups()[1:] if group is not None)
    return match.group(1), args


def _fraction(args: tuple[int, ...]) -> int:
    return min(args[0], 6) if args else 6


def pg_type(column: Column, masked: bool = False, key: bool = False) -> str:
    """The PostgreSQL column type for a logical type (``docs/cdc/apply.md``). ``masked``: text (hex SHA-256)."""
    del key  # every PostgreSQL type can be a key
    if masked:
        return "text"
    name, args = parse_type(column.type)
    if name in INT_BITS:
        return {
            "int8": "smallint",
            "int16": "smallint",
            "int32": "integer",
            "int64": "bigint",
            "uint8": "smallint",
            "uint16": "integer",
            "uint32": "bigint",
            "uint64": "numeric(20,0)",
        }[name]
    simple = {
        "year": "smallint",
        "bool": "boolean",
        "float32": "real",
        "float64": "double precision",
        "json": "jsonb",
        "bytes": "bytea",
        "date": "date",
        "uuid": "uuid",
        "enum": "text",
        "set": "text",
        "time": "interval",
    }
    if name in simple:
        return simple[name]
    if name == "decimal":
        return f"numeric({args[0]},{args[1] if len(args) > 1 else 0})" if args else "numeric"
    if name == "string":
        return f"varchar({column.length})" if column.length else "text"
    if name == "bit":
        return f"bit({args[0] if args else 1})"
    if name == "datetime":
        return f"timestamp({_fraction(args)}) without time zone"
    if name == "timestamp":
        return f"timestamp({_fraction(args)}) with time zone"
    raise ValueError(f"column {column.name}: no PostgreSQL type for logical type {column.type!r}")


def _mysql_labels(labels: list[str]) -> str:
    return ",".join("'" + label.replace("\\", "\\\\").replace("'", "''") + "'" for label in labels)


def mysql_type(column: Column, masked: bool = False, key: bool = False) -> str:
    """The MariaDB/MySQL column type for a logical type (``docs/cdc/apply.md``).

    ``key``: the column is in the primary key, so unbounded text and bytes get a bounded type an index
    can hold (``VARCHAR(768)`` = 3072 bytes of utf8mb4, ``VARBINARY(3072)``)."""
    if masked:
        return "CHAR(64)"
    name, args = parse_type(column.type)
    if name in INT_BITS:
        base = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[INT_BITS[name]]
        return f"{base} UNSIGNED" if name.startswith("u") else base
    simple = {
        "year": "YEAR",
        "bool": "BOOLEAN",
        "float32": "FLOAT",
        "float64": "DOUBLE",
        "json": "JSON",
        "date": "DATE",
        "uuid": "CHAR(36)",
    }
    if name in simple:
        return simple[name]
    if name == "decimal":
        if args:
            return f"DECIMAL({args[0]},{args[1] if len(args) > 1 else 0})"
        # PostgreSQL's unbounded numeric (up to 131072 digits before the point, 16383 after) fits no DECIMAL
        # (65 digits at most): the exact decimal text, as the event carries it
        return "VARCHAR(768)" if key else "LONGTEXT"
    if name == "string":
        if column.length and column.length <= 16383:
            return f"VARCHAR({column.length})"
        return "VARCHAR(768)" if key else "LONGTEXT"
    if name in ("enum", "set"):
        return f"{name.upper()}({_mysql_labels(column.labels)})" if column.labels else ("VARCHAR(768)" if key else "LONGTEXT")
    if name == "bytes":
        if column.length and column.length <= 65532:
            return f"VARBINARY({column.length})"
        return "VARBINARY(3072)" if key else "LONGBLOB"
    if name == "bit":
        return f"BIT({min(args[0] if args else 1, 64)})"
    if name == "time":
        return f"TIME({_fraction(args)})"
    if name in ("datetime", "timestamp"):  # timestamp: DATETIME holding UTC (TIMESTAMP ends in 2038)
        return f"DATETIME({_fraction(args)})"
    raise ValueError(f"column {column.name}: no MariaDB type for logical type {column.type!r}")


def default_clause(column: Column, dialect: str, masked: bool = False) -> str:
    """`` DEFAULT <literal>`` (and `` NOT NULL`` when the source column is) for a column with a constant
    :attr:`Column.default`, ``""`` otherwise (no default, a masked column). ``dialect``: ``postgresql`` or ``mysql``.

    Adding a column with its default fills the rows already in the target as the source's own ``ADD COLUMN``
    filled its rows (neither engine logs row changes for them)."""
    value = column.default
    if value is None or masked:
        return ""
    name, args = parse_type(column.type)
    if isinstance(value, bool):
        literal = ("true" if value else "false") if dialect == "postgresql" else ("1" if value else "0")
    elif name == "bit" and isinstance(value, int):
        literal = ("B'" if dialect == "postgresql" else "b'") + format(value, f"0{args[0] if args else 1}b") + "'"
    elif isinstance(value, int | float):
        literal = repr(value)
    else:
        text = value.replace("'", "''")
        literal = "'" + (text.replace("\\", "\\\\") if dialect == "mysql" else text) + "'"
    return f" DEFAULT {literal}" + ("" if column.nullable else " NOT NULL")


def widens(old: Column, new: Column) -> bool:
    """Whether every value of ``old`` fits ``new`` unchanged, so the target column can be altered in place.

    Every attribute of the column model counts (``docs/cdc/apply.md``): integers to a range holding the old
    one (the source's own range: MySQL ``MEDIUMINT`` and ``UNSIGNED`` included), decimals keeping integer
    digits and scale, strings and binaries holding as many characters/bytes (:func:`_capacity`) and not
    starting or stopping padding, more fractional seconds or bits, float32 -> float64, ENUM/SET labels
    added at the end. An unchanged column widens; anything else (a narrowing, another type) does not."""
    old_name, old_args = parse_type(old.type)
    new_name, new_args = parse_type(new.type)
    if old_name in INT_BITS and new_name in INT_BITS:
        old_low, old_high = _int_range(old.source_type, old_name)
        new_low, new_high = _int_range(new.source_type, new_name)
        return new_low <= old_low and new_high >= old_high
    if old_name != new_name:
        return old_name == "float32" and new_name == "float64"
    if new_name == "decimal":
        if not new_args:
            return True
        if not old_args:
            return False
        old_scale = old_args[1] if len(old_args) > 1 else 0
        new_scale = new_args[1] if len(new_args) > 1 else 0
        return new_scale >= old_scale and new_args[0] - new_scale >= old_args[0] - old_scale
    if new_name in ("string", "bytes"):
        # padding added or lengthened, or PostgreSQL's taken away, changes the values themselves
        if _padded(new.source_type):
            return _padded(old.source_type) and old.source_type.lower() == new.source_type.lower()
        if _padded(old.source_type) and not old.source_type.lower().startswith("binary("):
            return False  # character(n) -> varchar/text drops the trailing spaces
        if _char_type(new.source_type) and not _char_type(old.source_type):
            return False  # MySQL CHAR drops trailing spaces on read
        mysql = _mysql_spelling(old.source_type) or _mysql_spelling(new.source_type)
        old_capacity, new_capacity = _capacity(old, new_name, mysql), _capacity(new, new_name, mysql)
        return new_capacity is None or (old_capacity is not None and new_capacity >= old_capacity)
    if new_name in ("enum", "set"):
        old_labels, new_labels = old.labels or [], new.labels or []
        return new_labels[: len(old_labels)] == old_labels
    if new_name in ("time", "datetime", "timestamp"):
        return _fraction(new_args) >= _fraction(old_args)
    if new_name == "bit":
        return (new_args or (1,))[0] >= (old_args or (1,))[0]
    return old_args == new_args


_SOURCE_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_SOURCE_BYTES = {"tiny": 255, "": 65_535, "medium": 16_777_215, "long": 4_294_967_295}
_UTF8MB4 = 4  # bytes a character may take: MySQL TEXT/BLOB limits count bytes, VARCHAR(n) characters


def _int_range(source_type: str, logical: str) -> tuple[int, int]:
    """The values an integer column holds: from its source type when it names one (``mediumint(8) unsigned``,
    PostgreSQL ``integer``), else from its logical type."""
    words = source_type.lower().replace("(", " ").split()
    bits = _SOURCE_INT_BITS.get(words[0]) if words else None
    unsigned = "unsigned" in words if bits is not None else logical.startswith("u")
    if bits is None:
        bits = INT_BITS[logical]
    return (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _capacity(column: Column, logical: str, mysql: bool) -> int | None:
    """Bytes a string or binary column holds at most (None: unbounded): ``length`` characters (4 bytes each,
    utf8mb4) or bytes, else a MySQL TEXT/BLOB type's byte limit, else unbounded (PostgreSQL ``text``, ``bytea``).
    ``mysql``: a bare ``text`` is MySQL's (64 KiB), not PostgreSQL's."""
    if column.length is not None:
        return column.length * (_UTF8MB4 if logical == "string" else 1)
    found = re.fullmatch(r"(tiny|medium|long|)(text|blob)", column.source_type.lower().strip())
    if found is None or (found.group(0) == "text" and not mysql):
        return None
    return _SOURCE_BYTES[found.group(1)]


def _mysql_spelling(source_type: str) -> bool:
    """A string/binary source type only MySQL spells so (PostgreSQL says ``character varying(n)``, ``bytea``)."""
    text = source_type.lower().strip()
    return text != "text" and re.fullmatch(r"(var)?(char|binary)\(\d+\).*|(tiny|medium|long)?(text|blob)", text) is not None


def _padded(source_type: str) -> bool:
    """Values read padded to the declared length: PostgreSQL ``character(n)`` (spaces), MySQL ``binary(n)`` (NULs)."""
    text = source_type.lower()
    return text.startswith(("character(", "bpchar", "binary(")) or text == "character"


def _char_type(source_type: str) -> bool:
    """MySQL ``char(n)``: stored padded, read with trailing spaces dropped."""
    return source_type.lower().startswith("char(")


_TARGET_TEXT = {
    "character varying": "string",
    "varchar": "string",
    "character": "string",
    "char": "string",
    "text": "string",
    "tinytext": "string",
    "mediumtext": "string",
    "longtext": "string",
    "bytea": "bytes",
    "varbinary": "bytes",
    "binary": "bytes",
    "tinyblob": "bytes",
    "blob": "bytes",
    "mediumblob": "bytes",
    "longblob": "bytes",
}


def target_column(name: str, type_text: str) -> Column | None:
    """``type_text`` as a target's catalog spells it (PostgreSQL ``format_type``, MariaDB ``COLUMN_TYPE``) as a
    :class:`Column` :func:`widens` can compare with another of the same target; None for a type it leaves alone.

    >>> target_column("c", "character varying(20)").length
    20
    """
    text = type_text.strip().lower()
    found = re.fullmatch(r"([a-z ]+?)\s*(?:\((.*)\))?\s*((?:with|without) time zone|unsigned)?", text)
    if found is None:
        return None
    base, inside, suffix = found.group(1).strip(), found.group(2), found.group(3) or ""
    if base in ("enum", "set") and inside is not None:
        labels = [label.replace("''", "'") for label in re.findall(r"'((?:[^']|'')*)'", inside)]
        return Column(name, base, source_type=text, labels=labels)
    args = [int(part) for part in (inside or "").split(",") if part.strip().isdigit()]
    if base in _SOURCE_INT_BITS:
        return Column(name, "int64", source_type=text)
    if base in ("numeric", "decimal"):
        return Column(name, f"decimal({args[0]},{args[1] if len(args) > 1 else 0})" if args else "decimal")
    if base in ("real", "float", "double precision", "double"):
        return Column(name, "float32" if base in ("real", "float") else "float64")
    if base in _TARGET_TEXT:
        return Column(name, _TARGET_TEXT[base], source_type=text, length=args[0] if args else None)
    if base == "bit":
        return Column(name, f"bit({args[0] if args else 1})")
    if base in ("timestamp", "datetime", "time"):  # MariaDB's bare DATETIME has no fraction, PostgreSQL's six
        fraction = args[0] if args else (6 if suffix.endswith("time zone") else 0)
        logical = "timestamp" if suffix == "with time zone" else "time" if base == "time" else "datetime"
        return Column(name, f"{logical}({fraction})")
    return None


def target_narrows(present: str, wanted: str) -> bool:
    """Whether altering a target column from type text ``present`` to ``wanted`` (same catalog spelling) narrows
    it: both of one kind (integers, decimals, strings, binaries, times, bits, ENUM/SET) and :func:`widens` false.
    Types of different kinds, or unknown ones, are left to the target (False)."""
    old, new = target_column("c", present), target_column("c", wanted)
    if old is None or new is None:
        return False
    return _kind(old.type) == _kind(new.type) and not widens(old, new)


def _kind(logical: str) -> str:
    name = parse_type(logical)[0]
    return "int" if name in INT_BITS else "float" if name in ("float32", "float64") else name


def describe(column: Column) -> str:
    """A column's type for a message: its source type (``varchar(50)``), else its logical type with length or labels."""
    if column.source_type:
        return column.source_type
    if column.labels is not None:
        return f"{column.type}({','.join(repr(label) for label in column.labels)})"
    return f"{column.type}({column.length})" if column.length is not None else column.type


# --------------------------------------------------------------------------------------------- net effect


_KEEP_NONE: frozenset[str] = frozenset()


@dataclass(slots=True)
class Upsert:
    """The last image of a key in a segment: ``row`` (column -> canonical value) and columns to keep."""

    row: dict[str, Any]
    keep: frozenset[str]
    """Columns absent from ``row`` whose target value is kept (unchanged TOASTed values)."""
    event: ChangeEvent
    origin: Key | None = None
    """With ``keep``, after an update that changed the key: the key of the target row the kept values are
    read from (the key before the first change of the chain in the segment, which the segment deletes, so they
    are read before its deletes); ``None``: the key's own row."""


@dataclass(slots=True)
class Segment:
    """Net effect of consecutive changes with no truncate between them; ``truncate``: empty the table first."""

    truncate: bool = False
    upserts: dict[Key, Upsert] = field(default_factory=dict)
    deletes: dict[Key, ChangeEvent] = field(default_factory=dict)


def net_effect(events: Iterable[ChangeEvent], key_columns: Sequence[str]) -> list[Segment]:
    """The net effect of ``events`` (one table, in order) per key, as segments split by truncates.

    In a segment a key is either upserted or deleted, never both, so deletes and upserts can run in any
    order. Raises nothing; events without an image they need are treated as deletes (no ``after``).
    One pass, dictionaries held in locals (about 0.8 us per event)."""
    segments = [Segment()]
    upserts, deletes = segments[0].upserts, segments[0].deletes
    single = key_columns[0] if len(key_columns) == 1 else None
    for event in events:
        op = event.op
        if op == "t":
            current = Segment(truncate=True)
            segments.append(current)
            upserts, deletes = current.upserts, current.deletes
            continue
        key = tuple(event.key)
        after = event.after
        if op == "d" or after is None:
            upserts.pop(key, None)
            deletes[key] = event
            continue
        old = key
        before = event.before
        if op == "u" and before is not None and key_columns:
            if single is not None:
                if single in before:
                    old = (before[single],)
            elif all(column in before for column in key_columns):
                old = tuple(before[column] for column in key_columns)
        unchanged = event.unchanged
        previous = None
        if old != key:
            previous = upserts.pop(old, None)
            deletes[old] = event
        elif unchanged:
            previous = upserts.get(key)
        origin = None
        if unchanged:
            row = {**previous.row, **after} if previous is not None else dict(after)
            if before is not None:  # a whole old image (REPLICA IDENTITY FULL) has the unchanged values
                for column in unchanged:
                    if column not in row and column in before:
                        row[column] = before[column]
            keep = frozenset(column for column in unchanged if column not in row)
            if keep:  # the kept values are in the target row of the chain's first key
                origin = previous.origin if previous is not None else None
                if origin is None and old != key:
                    origin = old
                if origin == key:  # moved back to where it was: its own row
                    origin = None
        else:
            row, keep = after, _KEEP_NONE
        if deletes:
            deletes.pop(key, None)
        upserts[key] = Upsert(row, keep, event, origin)
    return [segment for segment in segments if segment.truncate or segment.upserts or segment.deletes]


# ------------------------------------------------------------------------------------------------ masking


def value_text(value: Any) -> str:
    """The text a value is masked from: ``str`` for text and numbers, lower-case hex for bytes, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def mask_values(values: Sequence[Any]) -> list[str | None]:
    """Hex SHA-256 of each value's :func:`value_text` (UTF-8); ``None`` stays ``None``.

    One C call per value (hashlib releases no GIL for short inputs; pyarrow has no SHA-256 kernel)."""
    sha256 = hashlib.sha256
    return [None if value is None else sha256(value_text(value).encode()).hexdigest() for value in values]


# --------------------------------------------------------------------------------------------- comparison


def time_delta(text: str) -> dt.timedelta:
    """``"[-]HH:MM:SS[.ffffff]"`` (hours may exceed 24) as a timedelta."""
    negative = text.startswith("-")
    hours, minutes, seconds = text.lstrip("-").split(":")
    delta = dt.timedelta(hours=int(hours), minutes=int(minutes), microseconds=int(Decimal(seconds) * 1_000_000))
    return -delta if negative else delta


def micros(value: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime, or of a naive one read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def same_value(logical: str, event_value: Any, target_value: Any, masked: bool = False) -> bool:
    """Whether a canonical event value and the value a target driver returned are the same value."""
    if event_value is None or target_value is None:
        return event_value is None and target_value is None
    if masked:
        return mask_values([event_value])[0] == str(target_value)
    name, _ = parse_type(logical)
    try:
        if name in INT_BITS or name == "year":
            return int(event_value) == int(target_value)
        if name == "bit":
            target = int(target_value, 2) if isinstance(target_value, str) else target_value
            if isinstance(target, bytes | bytearray):
                target = int.from_bytes(target, "big")
            return int(event_value) == int(target)
        if name == "bool":
            return bool(event_value) == bool(target_value)
        if name in ("float32", "float64"):
            return float(event_value) == float(target_value)
        if name == "decimal":
            return Decimal(str(event_value)) == Decimal(str(target_value))
        if name == "json":
            target = json.loads(target_value) if isinstance(target_value, str | bytes) else target_value
            return bool(json.loads(event_value) == target)
        if name == "bytes":
            return bytes(event_value) == bytes(target_value)
        if name == "time":
            target = target_value if isinstance(target_value, dt.timedelta) else time_delta(str(target_value))
            return time_delta(event_value) == target
        if name == "datetime":
            return bool(dt.datetime.fromisoformat(event_value) == target_value)
        if name == "timestamp":
            return int(event_value) == micros(target_value)
        if name == "date":
            return str(event_value) == str(target_value)
    except (ValueError, TypeError, InvalidOperation):
        return False
    return str(event_value) == str(target_value)


def key_value(logical: str, value: Any) -> Any:
    """A key value in a form both an event and a target driver's value reduce to (to match rows to keys)."""
    if value is None:
        return None
    name, _ = parse_type(logical)
    if name in INT_BITS or name == "year":
        return int(value)
    if name == "decimal":
        return Decimal(str(value)).normalize()
    if name == "bytes":
        return bytes(value)
    if name == "timestamp" and isinstance(value, dt.datetime):
        return micros(value)
    if name == "datetime" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if name == "date":
        return str(value)
    return value if isinstance(value, str | int | dt.datetime) else str(value)


# ------------------------------------------------------------------------------------------- table shape


def target_columns(table: TableRef) -> list[Column]:
    """The source's columns that reach the target (``drop`` left out), in source order."""
    dropped = set(table.drop)
    return [column for column in table.source.columns if column.name not in dropped]


def no_key_error(table: TableRef) -> SyncError:
    return SyncError(
        f"table {table.source.qualified} has no primary key and no_key is 'refuse': add a primary key at the source "
        "or set no_key: insert-only or full-row in the sync",
        table=table.target_qualified,
    )


def cannot_alter(table: TableRef, column: str, old: str, new: str) -> SyncError:
    return SyncError(
        f"table {table.target_qualified}: cannot change column {column} from {old} to {new} in place; "
        f"run `sluice sync resync PATH {table.source.qualified}` (PATH: the project) to copy the table again",
        table=table.target_qualified,
    )
