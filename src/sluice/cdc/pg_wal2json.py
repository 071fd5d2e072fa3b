"""wal2json format-version 2 rows, as ``pg_logical_slot_peek_changes`` returns them, decoded with msgspec.

wal2json 2.5 is what Debian 12 ships (``postgresql-15-wal2json``); it has no
``numeric-data-types-as-string`` option, so numbers are decoded to their exact text (see :class:`W2JColumn`).

One row per action: ``B`` begin (``nextlsn`` is the end of the commit record: the transaction's position),
``I``/``U``/``D`` row changes (``columns`` the new image; ``identity`` the old key, or the whole old row
under ``REPLICA IDENTITY FULL``), ``T`` truncate, ``C`` commit, ``M`` logical message. Options follow
wal2json 2.5's README (https://github.com/eulerto/wal2json#parameters).
"""

from __future__ import annotations

from typing import Any

import msgspec

HEARTBEAT_PREFIX = "sluice-heartbeat"
"""Prefix of the logical messages capture writes while idle (``pg_logical_emit_message``)."""


class W2JColumn(msgspec.Struct, frozen=True):
    """A column of a change: name, ``format_type`` text and value.

    Values: JSON strings as ``str``, integers as ``int`` (any size), other numbers as the exact text of
    their literal (``str``: the decoder's ``float_hook``), ``true``/``false`` as ``bool``, ``null`` as
    ``None``. wal2json 2.5 writes NaN and infinite numbers as ``null``."""

    name: str
    type: str
    value: Any = None


class W2JRow(msgspec.Struct, frozen=True):
    """One wal2json v2 row. LSNs are ``X/Y`` text."""

    action: str
    xid: int | None = None
    timestamp: str | None = None
    lsn: str | None = None
    nextlsn: str | None = None
    schema: str | None = None
    table: str | None = None
    columns: list[W2JColumn] | None = None
    identity: list[W2JColumn] | None = None
    transactional: bool | None = None
    prefix: str | None = None
    content: str | None = None


decoder = msgspec.json.Decoder(W2JRow, float_hook=str)


def lsn_int(text: str) -> int:
    """``16/B374D848`` -> the LSN as a 64-bit integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def lsn_text(value: int) -> str:
    """The ``X/Y`` text of an integer LSN."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def add_tables_option(patterns: list[str]) -> str:
    """wal2json's ``add-tables`` value: ``schema.table`` entries (``schema.*`` allowed), commas and dots escaped."""

    def escape(part: str) -> str:
        return part if part == "*" else part.replace("\\", "\\\\").replace(",", "\\,").replace(".", "\\.").replace(" ", "\\ ")

    entries = []
    for pattern in patterns:
        schema, _, table = pattern.partition(".")
        entries.append(f"{escape(schema)}.{escape(table)}")
    return ",".join(entries)


def peek_sql(limit: int) -> tuple[str, list[Any]]:
    """The peek query (parameters: slot, then the ``add-tables`` value appended by the caller).

    Returns ``(sql, options)`` where ``sql`` has placeholders for the slot and ``add-tables``; the
    result columns are ``lsn`` (text) and ``data`` (the JSON row)."""
    options: list[Any] = [
        "format-version", "2",
        "include-xids", "1",
        "include-timestamp", "1",
        "include-lsn", "1",
        "include-transaction", "1",
        "include-type-oids", "0",
        "include-typmod", "1",
        "add-msg-prefixes", HEARTBEAT_PREFIX,
    ]  # fmt: skip
    placeholders = ", ".join(["%s"] * len(options))
    sql = f"SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, {int(limit)}, {placeholders}, 'add-tables', %s)"
    return sql, options
