"""The API key table beside the state store's own: in its SQLite file or in its PostgreSQL schema.

SQLite: table ``api_keys`` in the state file (``.sluice/state.db`` by default), reached through
:class:`sluice.sqlite_file.SqliteFile` like the state store. PostgreSQL: ``sluice_state.api_keys``,
created if missing under the state store's advisory lock; ``psycopg`` comes with the ``postgres`` extra,
as for the state store itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sluice.api.security.keys import ApiKeyRecord, KeyStore
from sluice.errors import StateError
from sluice.sqlite_file import SqliteFile

_COLUMNS = "key_id, role, owner, created_at, digest, expires_at, revoked_at"

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    digest TEXT NOT NULL,
    expires_at REAL,
    revoked_at REAL
) WITHOUT ROWID;
"""

_PG_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS sluice_state;
CREATE TABLE IF NOT EXISTS sluice_state.api_keys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    digest TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
"""
# The state store's lock (sluice.state.postgres._SCHEMA_LOCK): both create objects in sluice_state.
_PG_SCHEMA_LOCK = 0x51_0C_E5_7A_7E


def _record(row: Sequence[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(*row)


def _row(record: ApiKeyRecord) -> tuple[Any, ...]:
    """The values of ``record`` in ``_COLUMNS`` order."""
    return (
        record.key_id,
        record.role,
        record.owner,
        record.created_at,
        record.digest,
        record.expires_at,
        record.revoked_at,
    )


class SqliteKeyStore(KeyStore):
    """API keys in the SQLite state file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.db = SqliteFile(path, "the state store", StateError, _SQLITE_SCHEMA)

    def insert(self, record: ApiKeyRecord) -> None:
        with self.db.write() as conn:
            conn.execute(
                f"INSERT INTO api_keys({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _row(record),
            )

    def get(self, key_id: str) -> ApiKeyRecord | None:
        row = self.db.conn().execute(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else _record(row)

    def all(self) -> list[ApiKeyRecord]:
        return [_record(row) for row in self.db.conn().execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id")]

    def set_revoked(self, key_id: str, at: float) -> bool:
        with self.db.write() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (at, key_id))
            return conn.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (key_id,)).fetchone() is not None

    def close(self) -> None:
        self.db.close()


class PostgresKeyStore(KeyStore):
    """API keys in ``sluice_state.api_keys`` of the PostgreSQL state database; one connection per thread."""

    def __init__(self, url: str) -> None:
        from sluice.state.postgres import PostgresStateStore

        # Reuse the state store's connection handling (messages without the password, one connection per thread).
        self._state = PostgresStateStore(url)
        with self._state._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            conn.execute(_PG_SCHEMA)

    def insert(self, record: ApiKeyRecord) -> None:
        with self._state._write() as conn:
            conn.execute(
                f"INSERT INTO sluice_state.api_keys({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                _row(record),
            )

    def get(self, key_id: str) -> ApiKeyRecord | None:
        rows = self._state._rows(f"SELECT {_COLUMNS} FROM sluice_state.api_keys WHERE key_id = %s", (key_id,))
        return _record(rows[0]) if rows else None

    def all(self) -> list[ApiKeyRecord]:
        rows = self._state._rows(f"SELECT {_COLUMNS} FROM sluice_state.api_keys ORDER BY created_at, key_id", ())
        return [_record(row) for row in rows]

    def set_revoked(self, key_id: str, at: float) -> bool:
        with self._state._write() as conn:
            conn.execute(
                "UPDATE sluice_state.api_keys SET revoked_at = %s WHERE key_id = %s AND revoked_at IS NULL", (at, key_id)
            )
            found = conn.execute("SELECT 1 FROM sluice_state.api_keys WHERE key_id = %s", (key_id,)).fetchone()
        return found is not None

    def close(self) -> None:
        self._state.close()
