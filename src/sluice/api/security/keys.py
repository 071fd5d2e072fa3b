"""API keys: their format, how they are stored (hashed) and checked.

A key reads ``slk_<id>_<secret>``: ``slk`` says what it is (so secret scanners and people recognise it),
``<id>`` is 16 hex digits, public (``sluice api-key list`` shows it, logs and metrics may name it),
``<secret>`` is 32 random bytes from :func:`secrets.token_urlsafe` (43 characters, 256 bits). The whole key
is shown once, when it is created; the store keeps its SHA-256 digest, never the key. A fast hash is
enough because the secret is random and 256 bits long (nothing to guess from a dictionary; slow hashes
such as bcrypt or Argon2 are for passwords people choose); GitHub's and Stripe's tokens are kept the same
way. A presented key is looked up by its id and its digest compared with :func:`hmac.compare_digest`
(constant time).

Records live in the project's state store database: the table ``api_keys`` in the SQLite file, or
``sluice_state.api_keys`` in PostgreSQL (:mod:`sluice.api.security.key_stores`). A state store shared by
several projects shares their keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.errors import SluiceError

KEY_PREFIX = "slk"
ID_HEX_DIGITS = 16


class KeyNotFound(SluiceError):
    """No API key has that id (``sluice api-key revoke``)."""


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One API key as stored. Times are seconds since the epoch; ``digest`` is the key's SHA-256, hex."""

    key_id: str
    role: str
    owner: str
    created_at: float
    digest: str
    expires_at: float | None = None
    revoked_at: float | None = None

    def state(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now`` (seconds since the epoch)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def as_json(self, now: float) -> dict[str, Any]:
        """What ``sluice api-key list --json`` prints (never the digest)."""
        return {
            "id": self.key_id,
            "role": self.role,
            "owner": self.owner,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "state": self.state(now),
        }


def digest(key: str) -> str:
    """SHA-256 of the whole key text, 64 hex digits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``: the public id and the whole key, ``slk_<id>_<secret>``."""
    key_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    """The id part of a presented key, or None when the text is not shaped like a Sluice key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != ID_HEX_DIGITS or not parts[2]:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return parts[1]


def matches(record: ApiKeyRecord, key: str) -> bool:
    """Whether ``key`` is the key of ``record`` (its digest compared in constant time)."""
    return hmac.compare_digest(record.digest, digest(key))


class KeyStore(ABC):
    """Where API keys are kept. Implementations are safe to use from several threads."""

    @abstractmethod
    def insert(self, record: ApiKeyRecord) -> None:
        """Store a new key record."""

    @abstractmethod
    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of ``key_id``, or None."""

    @abstractmethod
    def all(self) -> list[ApiKeyRecord]:
        """Every record, oldest first."""

    @abstractmethod
    def set_revoked(self, key_id: str, at: float) -> bool:
        """Mark ``key_id`` revoked at ``at`` unless it already is; False when no key has that id."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def create(self, role: str, owner: str, expires_at: float | None = None) -> tuple[ApiKeyRecord, str]:
        """A new key for ``role`` and ``owner``: its record and the whole key, which only this call returns."""
        key_id, key = new_key()
        record = ApiKeyRecord(key_id, role, owner, time.time(), digest(key), expires_at)
        self.insert(record)
        return record, key

    def revoke(self, key_id: str) -> ApiKeyRecord:
        """Revoke ``key_id`` (revoking twice keeps the first time). Raises KeyNotFound."""
        if not self.set_revoked(key_id, time.time()):
            raise KeyNotFound(f"no API key has the id '{key_id}'; list them with 'sluice api-key list'")
        record = self.get(key_id)
        assert record is not None
        return record


def open_key_store(state_url: str, root: Path | None = None) -> KeyStore:
    """The key store in the state store database of ``state_url`` (``sqlite:///...`` or ``postgresql://...``).

    Relative SQLite paths are under ``root``. Raises ConfigError for another scheme, StateError when the
    database cannot be opened.
    """
    from sluice.api.security.key_stores import PostgresKeyStore, SqliteKeyStore
    from sluice.errors import ConfigError
    from sluice.urls import connection_scheme, sqlite_path

    scheme = connection_scheme(state_url)
    if scheme == "sqlite":
        return SqliteKeyStore(sqlite_path(state_url, root))
    if scheme == "postgresql":
        return PostgresKeyStore(state_url)
    raise ConfigError(
        f"API keys are kept in the state store, and a {scheme}:// state store cannot hold them (sqlite or postgresql)"
    )
