"""Running REST statements on the data API's databases (:class:`sluice.api.databases.Database`: its pool,
statement time-outs and statement counter), with driver errors mapped to :class:`RestError` by SQLSTATE
(:func:`errors.database_error`: 409 for a unique or foreign key, 400 for a bad value, never a driver's text).

A "no such table/column" answer raises :class:`StaleRequest` after calling ``on_stale`` (the data API re-reads
its catalog); :class:`sluice.api.rest.adapt.DataApiRest` then runs the request once more.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sluice.api.databases import Database
from sluice.api.rest.errors import database_error, mysql_sqlstate
from sluice.api.rest.sql import DIALECTS, Dialect, Frag

STALE_SQLSTATES = {"42703", "42P01"}
STALE_MYSQL = {1054, 1146}
SQLITE_INTEGRITY = (
    ("UNIQUE", "23505"),
    ("PRIMARY KEY", "23505"),
    ("FOREIGN KEY", "23503"),
    ("NOT NULL", "23502"),
    ("CHECK", "23514"),
)


class Cursor(Protocol):
    """What a transaction offers: run one statement, get its rows."""

    def run(self, frag: Frag) -> list[tuple[Any, ...]]: ...


class StaleRequest(Exception):
    """The database no longer has a table or column the catalog had: re-read it and run the request again."""


class Runner:
    """One database of the data API as the REST layer uses it: ``with runner.transaction() as cur: cur.run(frag)``
    (committed at the end of the block, rolled back when it raises)."""

    def __init__(self, database: Database, on_stale: Callable[[], None] = lambda: None) -> None:
        self.database = database
        self.dialect: Dialect = DIALECTS[database.scheme]
        self.on_stale = on_stale
        self._configured: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self, *, single: bool = False) -> Iterator[Cursor]:
        """A pooled connection's cursor inside a transaction; ``single``: the block runs one statement, which
        is atomic on its own, so it runs without ``BEGIN`` and ``COMMIT`` (two round trips fewer)."""
        with self.database.connection() as conn:
            if self.dialect.name == "mysql":
                self._configure(conn)
            if single:
                yield _Cursor(self, conn)
                return
            with self.database.transaction(conn):
                yield _Cursor(self, conn)

    def _configure(self, conn: Any) -> None:
        with self._lock:
            if conn in self._configured:
                return
        with conn.cursor() as cur:  # a page's JSON is built with GROUP_CONCAT: no cut at its 1 MiB default
            cur.execute("SET SESSION group_concat_max_len = 1073741824")
        with self._lock:
            self._configured.add(conn)


class _Cursor:
    def __init__(self, runner: Runner, conn: Any) -> None:
        self.runner = runner
        self.conn = conn

    def run(self, frag: Frag) -> list[tuple[Any, ...]]:
        text, params = self.runner.dialect.finish(frag)
        database = self.runner.database
        database.statements += 1
        try:
            if database.scheme == "sqlite":
                return list(self.conn.execute(text, tuple(params)).fetchall())
            with self.conn.cursor() as cur:
                cur.execute(text, list(params))
                return list(cur.fetchall()) if cur.description is not None else []
        except Exception as exc:
            state = sqlstate(exc)
            gone = str(exc).startswith(("no such column", "no such table"))
            if state in STALE_SQLSTATES or gone or (exc.args and exc.args[0] in STALE_MYSQL):
                self.runner.on_stale()
                raise StaleRequest() from None
            raise database_error(state, connection=database.name) from None


def sqlstate(exc: Exception) -> str | None:
    """The SQLSTATE of a psycopg, PyMySQL or sqlite3 error (SQLite and MySQL errors mapped to one), or ``None``."""
    module = type(exc).__module__
    if module.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return mysql_sqlstate(exc.args[0])
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state
    if module.startswith("psycopg"):
        name = type(exc).__name__
        if name == "DataError":  # raised by psycopg itself, e.g. a NUL in a text value: "22P05"-like
            return "22P05" if "NUL" in str(exc) else "22000"
        return "08000" if name == "OperationalError" else None
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc).upper()
        markers = (
            ("UNIQUE", "23505"),
            ("PRIMARY KEY", "23505"),
            ("FOREIGN KEY", "23503"),
            ("NOT NULL", "23502"),
            ("CHECK", "23514"),
        )
        for marker, found in markers:
            if marker in text:
                return found
        return "23000"
    if isinstance(exc, sqlite3.DataError | OverflowError | sqlite3.ProgrammingError):
        return "22000"
    if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
        return "57014"
    return None
