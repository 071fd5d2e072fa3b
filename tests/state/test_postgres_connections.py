"""The PostgreSQL state store closes the connections of threads that have ended (every run writes from threads
of its own: a long-lived scheduler or server would otherwise reach the server's max_connections)."""

from __future__ import annotations

import threading

import psycopg
import pytest

from sluice.state.postgres import PostgresStateStore

pytestmark = pytest.mark.postgres


def backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_connections_of_ended_threads_are_closed(pg_db_url: str) -> None:
    store = PostgresStateStore(pg_db_url)
    try:
        for _ in range(3):
            threads = [threading.Thread(target=store.list_runs) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        last = threading.Thread(target=store.list_runs)  # opening its connection closes the ended threads'
        last.start()
        last.join()
        assert backends(pg_db_url) == 2  # the constructor's (this thread's) and the last thread's
    finally:
        store.close()
    assert backends(pg_db_url) == 0
