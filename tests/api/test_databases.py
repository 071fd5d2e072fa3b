"""The data API's connection pool: at most POOL_SIZE connections, waited for rather than opened beyond it,
kept after a statement error that leaves them usable, closed when left inside a transaction."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sluice.api import databases
from sluice.api.databases import Database
from sluice.api.gate import DataApiError


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setattr(databases, "POOL_SIZE", 2)
    database = Database("hr", f"sqlite:///{tmp_path / 'hr.db'}", None, timeout_s=5.0)
    opened: list[Any] = []
    connect = database.connect

    def counted() -> Any:
        conn = connect()
        opened.append(conn)
        return conn

    monkeypatch.setattr(database, "connect", counted)
    database.opened = opened  # type: ignore[attr-defined]
    with database.connection() as conn:
        database.execute(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY)", {})
    return database


def test_a_busy_pool_is_waited_for_not_grown(db: Database) -> None:
    got: list[Any] = []
    with db.connection() as first, db.connection() as second:
        assert first is not second

        def third() -> None:
            with db.connection() as conn:
                got.append(conn)

        waiter = threading.Thread(target=third)
        waiter.start()
        time.sleep(0.2)
        assert got == []  # still waiting: both connections are busy
    waiter.join(timeout=5)
    assert len(got) == 1 and got[0] in (first, second)
    assert len(db.opened) == 2  # type: ignore[attr-defined]


def test_a_pool_busy_longer_than_the_timeout_is_a_503(db: Database) -> None:
    db.timeout_s = 0.1
    with db.connection(), db.connection(), pytest.raises(DataApiError) as caught, db.connection():
        pass
    assert caught.value.status == 503
    assert caught.value.code == "database-busy"


def test_a_statement_error_keeps_the_connection_unless_a_transaction_is_left_open(db: Database) -> None:
    with db.connection() as conn:
        db.execute(conn, "INSERT INTO t (id) VALUES (1)", {})
    with pytest.raises(DataApiError), db.connection() as conn:
        db.execute(conn, "INSERT INTO t (id) VALUES (1)", {})  # a unique key broken: a 400, the connection is fine
    with db.connection() as again:
        assert again is conn
    with pytest.raises(RuntimeError), db.connection() as conn:
        db.execute(conn, "BEGIN", {})
        raise RuntimeError("left inside a transaction")
    with db.connection() as fresh:
        assert fresh is not conn
        assert db.execute(fresh, "SELECT count(*) FROM t", {}) == [(1,)]
    assert len(db.opened) == 2  # type: ignore[attr-defined]
