"""API keys: format, hashing, and the store beside the state store in SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.api.security.keys import KeyNotFound, KeyStore, digest, key_id_of, matches, new_key, open_key_store
from sluice.errors import ConfigError


def test_key_format_and_digest() -> None:
    key_id, key = new_key()
    assert key.startswith(f"slk_{key_id}_") and len(key_id) == 16
    assert len(key) == len("slk_") + 16 + 1 + 43  # 32 random bytes, base64url without padding
    assert key_id_of(key) == key_id
    assert digest(key) != digest(key[:-1] + ("a" if key[-1] != "a" else "b"))
    assert len(digest(key)) == 64
    assert new_key() != new_key()


@pytest.mark.parametrize(
    "text", ["", "slk_", "slk_abc_secret", "xyz_0123456789abcdef_s", "slk_0123456789abcdeg_s", "slk_0123456789abcdef_"]
)
def test_malformed_keys_have_no_id(text: str) -> None:
    assert key_id_of(text) is None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_db_url")
    opened = open_key_store(url)
    yield opened
    opened.close()


def test_create_get_list_revoke(store: KeyStore) -> None:
    record, key = store.create("editor", "alice", expires_at=time.time() + 60)
    stored = store.get(record.key_id)
    assert stored == record
    assert stored is not None and matches(stored, key) and not matches(stored, key + "x")
    assert key not in repr(stored)  # only the digest is kept
    other, _ = store.create("viewer", "bob")
    assert [r.key_id for r in store.all()] == [record.key_id, other.key_id]
    revoked = store.revoke(record.key_id)
    assert revoked.revoked_at is not None and revoked.state(time.time()) == "revoked"
    assert store.revoke(record.key_id).revoked_at == revoked.revoked_at  # the first revocation time stays
    with pytest.raises(KeyNotFound, match="no API key has the id 'ffff'"):
        store.revoke("ffff")
    assert store.get("0000000000000000") is None


def test_the_key_table_lives_in_the_state_database(tmp_path: Path) -> None:
    import sqlite3

    from sluice.state.registry import open_state

    url = f"sqlite:///{tmp_path / 'state.db'}"
    open_state(url).close()
    keys = open_key_store(url)
    keys.create("editor", "x")
    keys.close()
    tables = {
        row[0] for row in sqlite3.connect(tmp_path / "state.db").execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"runs", "api_keys"} <= tables


def test_another_state_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot hold them"):
        open_key_store("kafka://127.0.0.1:29092")
