"""Destinations connected ahead of their first load (sluice.destinations.warm)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from helpers import load, wait_for, write_yaml
from sluice.destinations.duckdb import DuckDBDestination
from sluice.destinations.postgres import PostgresDestination
from sluice.destinations.warm import WarmDestinations, planned_connections
from sluice.project.model import ConnectionSpec, Origin

ORIGIN = Origin("sluice.yaml")


def backends(url: str) -> list[tuple[Any, ...]]:
    """The server processes of ``url``'s database, other than the one asking."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()


@pytest.mark.postgres
def test_the_first_load_takes_the_connection_made_ahead(pg_db_url: str, tmp_path: Path) -> None:
    warm = WarmDestinations(tmp_path)
    connection = ConnectionSpec("wh", pg_db_url, ORIGIN)
    warm.connect([connection])
    first = warm.open(connection)
    assert isinstance(first, PostgresDestination)
    try:
        assert first._conn is not None  # connected before anything was written
        assert len(backends(pg_db_url)) == 1
        first.write("t", pa.table({"a": [1, 2]}).to_reader(), "replace", [], "l1")
        second = warm.open(connection)  # one per connection: the next load opens its own
        assert second is not first and isinstance(second, PostgresDestination) and second._conn is None
    finally:
        first.close()
        warm.close()
    # A server process ends a moment after its client hangs up.
    wait_for(lambda: backends(pg_db_url) == [], 10, "the load's connection to be closed")


@pytest.mark.postgres
def test_close_closes_what_no_load_took(pg_db_url: str, tmp_path: Path) -> None:
    warm = WarmDestinations(tmp_path)
    warm.connect([ConnectionSpec("wh", pg_db_url, ORIGIN)])
    wait_for(lambda: len(backends(pg_db_url)) == 1, 10, "the connection made ahead")
    warm.close()
    wait_for(lambda: backends(pg_db_url) == [], 10, "the connection no load took to be closed")


def test_a_connection_that_fails_ahead_is_opened_again_by_the_load(tmp_path: Path) -> None:
    warm = WarmDestinations(tmp_path)
    connection = ConnectionSpec("wh", "postgresql://nobody@127.0.0.1:1/none", ORIGIN)
    warm.connect([connection])
    destination = warm.open(connection)
    try:
        assert isinstance(destination, PostgresDestination) and destination._conn is None
    finally:
        destination.close()


def test_a_database_file_is_not_opened_ahead(tmp_path: Path) -> None:
    warm = WarmDestinations(tmp_path)
    connection = ConnectionSpec("dw", "duckdb:///dw.duckdb", ORIGIN)
    warm.connect([connection])
    assert not (tmp_path / "dw.duckdb").exists()
    destination = warm.open(connection)
    assert isinstance(destination, DuckDBDestination)
    destination.close()


def test_a_changed_connection_is_not_served_the_old_one(tmp_path: Path) -> None:
    warm = WarmDestinations(tmp_path)
    warm.connect([ConnectionSpec("wh", "postgresql://nobody@127.0.0.1:1/one", ORIGIN)])
    other = ConnectionSpec("wh", "postgresql://nobody@127.0.0.1:1/two", ORIGIN)
    destination = warm.open(other)
    try:
        assert destination.connection == other
    finally:
        destination.close()
        warm.close()


def test_planned_connections_are_those_of_the_targets_and_their_ancestors(tmp_path: Path) -> None:
    write_yaml(
        tmp_path,
        """
connections: {a: "postgresql://x@h/a", b: "postgresql://x@h/b", c: "postgresql://x@h/c"}
objects:
  - {id: 1001, name: one, source: {type: faker, schema: users, rows: 1}, destination: {connection: a, table: one}}
  - {id: 2001, name: two, parents: [1001], sql: "select * from one", destination: {connection: b, table: two}}
  - {id: 3001, name: three, parents: [1001], sql: "select * from one", destination: {connection: c, table: three}}
""",
    )
    project = load(tmp_path)
    assert [c.name for c in planned_connections(project, [2001])] == ["a", "b"]
    assert [c.name for c in planned_connections(project, [3001])] == ["a", "c"]
    assert [c.name for c in planned_connections(project, None)] == ["a", "c"]  # the last stage's objects
    assert planned_connections(project, [99]) == []


@pytest.mark.postgres
def test_a_run_loads_through_the_connection_it_made_while_planning(
    pg_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.runtime.run import RunOptions, run_project

    connected: list[tuple[int, str]] = []
    loaded: list[int] = []
    connect, write = PostgresDestination.connect, PostgresDestination.write

    def recording(self: PostgresDestination) -> None:
        connected.append((id(self), threading.current_thread().name))
        connect(self)

    def loading(self: PostgresDestination, *args: Any, **kwargs: Any) -> int:
        loaded.append(id(self))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(PostgresDestination, "connect", recording)
    monkeypatch.setattr(PostgresDestination, "write", loading)
    write_yaml(
        tmp_path,
        f"""
connections: {{wh: "{pg_db_url}"}}
objects:
  - {{id: 1001, name: one, source: {{type: faker, schema: users, rows: 5}}, destination: {{connection: wh, table: one}}}}
""",
    )
    summary = run_project(load(tmp_path), RunOptions())
    assert summary.status == "succeeded"
    assert [(ident, "sluice-connect") for ident in loaded] == connected  # the load's destination, connected ahead
    with psycopg.connect(pg_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM one").fetchone() == (5,)
    wait_for(lambda: backends(pg_db_url) == [], 10, "the run's connections to be closed")


@pytest.mark.postgres
def test_planning_asks_through_the_connection_made_ahead(pg_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.runtime.run import RunOptions, run_project

    write_yaml(
        tmp_path,
        f"""
connections: {{wh: "{pg_db_url}"}}
objects:
  - {{id: 1001, name: one, source: {{type: faker, schema: users, rows: 5, seed: 1}}, destination: {{connection: wh, table: one}}}}
""",
    )
    assert run_project(load(tmp_path), RunOptions()).status == "succeeded"
    opened: list[str] = []
    connect = PostgresDestination._connect

    def counting(self: PostgresDestination) -> Any:
        if self._conn is None:
            opened.append(threading.current_thread().name)
        return connect(self)

    monkeypatch.setattr(PostgresDestination, "_connect", counting)
    summary = run_project(load(tmp_path), RunOptions())
    assert summary.status == "succeeded" and summary.objects[1001].status == "skipped"  # fresh: its table was asked for
    assert opened == ["sluice-connect"]
