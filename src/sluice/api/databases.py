"""Connections of the data API: a small pool per database, statement time-outs, and driver errors as
:class:`~sluice.api.gate.DataApiError` (a client's mistake is a 400 with a code, never SQL text).

The pool keeps at most :data:`POOL_SIZE` connections open per database; a request that finds them all busy
waits for one (up to the statement time-out, then a 503 ``database-busy``) rather than opening a connection
of its own, so a burst of requests never makes the database fork and end sessions (what a connection costs
PostgreSQL is several times what a primary-key query does). PostgreSQL connections prepare a statement the
second time its text is run (psycopg's ``prepare_threshold``): the compiled SQL of a document is the same text
for every request with variables of the same shape, so PostgreSQL plans it once per connection.

``Database.statements`` counts every statement a request ran (tests assert one per GraphQL request); the
catalog reader uses a connection of its own that is not counted.

A database that stops answering fails requests fast and is used again by itself when it is back: a new
connection waits at most :attr:`Database.connect_timeout_s`; a PostgreSQL statement that the server does not
answer within :attr:`Database.allowance_s` (the statement time-out and a margin; a frozen or unreachable server
never sends its own time-out) has its connection cut (:mod:`sluice.api.deadlines`), MariaDB's has PyMySQL's
read and write time-outs; an idle PostgreSQL connection that the server closed (it was stopped or restarted) is
dropped before a request takes it; a lost connection empties the pool of its idle ones; and for
:data:`RETRY_AFTER_S` after a connection attempt failed, requests are answered at once. Each of these is a 503
``database-unavailable`` naming the connection (``Retry-After`` when no attempt was made).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sluice.api.catalog import Catalog
from sluice.api.deadlines import Deadlines, readable
from sluice.api.dialects import Dialect, dialect_for
from sluice.api.gate import DataApiError
from sluice.urls import connection_scheme, libpq_url, sqlite_path

log = logging.getLogger("sluice.api")
POOL_SIZE = 8
"""Connections kept open per database (PostGraphile's node-postgres pool defaults to 10)."""
PREPARE_THRESHOLD = 1
"""psycopg prepares a statement on its second run on a connection (its default: the sixth)."""
CONNECT_TIMEOUT_S = 5
"""Longest wait for a new connection (libpq's, PyMySQL's and asyncpg's connect time-out) unless the URL sets
``connect_timeout``; never more than the statement time-out, never less than 2 s (libpq's least)."""
RETRY_AFTER_S = 1.0
"""After a connection attempt failed, requests that need a new connection are answered 503 at once for this
long (``Retry-After: 1``) rather than each waiting for an attempt of its own."""
LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
"""PostgreSQL's administrator shutdown, crash shutdown and "cannot connect now" (starting or stopping): like a
connection exception (class 08), the server is not there to answer."""


STALE_SQLSTATES = frozenset({"42703", "42P01", "42883"})
"""PostgreSQL's undefined column, table and function: the catalog changed under the API (:class:`StaleCatalog`)."""


class StaleCatalog(Exception):
    """The database answered "no such table or column": the catalog changed under the API."""


class Database:
    """One connection of ``api.sources`` or ``api.mutations``: its dialect, a pool, the catalog reader.

    ``timeout_s``: each statement's time-out (PostgreSQL ``statement_timeout``, MariaDB ``max_statement_time``,
    SQLite a progress handler). Raises :class:`DataApiError` 503 ``database-unavailable`` when the server cannot
    be reached or does not answer (see the module).
    """

    def __init__(self, name: str, url: str, root: Path | None, timeout_s: float) -> None:
        self.name = name
        self.url = url
        self.scheme = connection_scheme(url)
        if self.scheme not in ("postgresql", "mysql", "sqlite"):
            raise DataApiError(f"connection '{name}' is {self.scheme}://; the data API serves postgresql, mysql and sqlite")
        self.dialect: Dialect = dialect_for(self.scheme)
        self.root = root
        self.timeout_s = timeout_s
        self.connect_timeout_s = max(2, min(CONNECT_TIMEOUT_S, math.ceil(timeout_s)))
        """Seconds a new connection may take (an integer: libpq's ``connect_timeout`` is one)."""
        self.allowance_s = timeout_s + max(1.0, timeout_s / 2)
        """Seconds a server may take to answer a pooled connection's statements before the connection is cut."""
        self.statements = 0
        self._deadlines = Deadlines(name, self.allowance_s, _pg_socket) if self.scheme == "postgresql" else None
        self._catalog_deadlines = Deadlines(name, 2 * self.allowance_s, _pg_socket) if self._deadlines else None
        self._down_until = 0.0
        self._idle: list[Any] = []
        self._open = 0
        self._available = threading.Condition(threading.Lock())
        self._lock = threading.Lock()
        self._catalog_conn: Any = None

    # Connections.

    def connect(self) -> Any:
        """A new driver connection (autocommit; statements time out after ``timeout_s``)."""
        try:
            if self.scheme == "postgresql":
                import psycopg
                from psycopg.conninfo import conninfo_to_dict

                url, options = self.postgres_arguments()
                timeout: dict[str, Any] = {"connect_timeout": self.connect_timeout_s}
                if "connect_timeout" in conninfo_to_dict(url):  # the URL's own
                    timeout = {}
                pg = psycopg.connect(url, autocommit=True, options=options, **timeout)
                pg.prepare_threshold = PREPARE_THRESHOLD
                return pg
            if self.scheme == "mysql":
                import pymysql

                from sluice.connectors.mysql import connect_arguments

                arguments = connect_arguments(self.url)
                if "connect_timeout" not in parse_qs(urlsplit(self.url).query):
                    arguments["connect_timeout"] = self.connect_timeout_s
                arguments["init_command"] = f"SET SESSION max_statement_time = {float(self.timeout_s)}"
                arguments["read_timeout"] = arguments["write_timeout"] = self.allowance_s
                return pymysql.connect(**arguments, autocommit=True)
            path = sqlite_path(self.url, self.root)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=self.timeout_s)
            conn.execute("PRAGMA foreign_keys = ON")
            return conn
        except DataApiError:
            raise
        except Exception as exc:
            log.warning("data API: cannot connect to '%s': %s", self.name, exc)
            raise unavailable(self.name) from None

    def postgres_arguments(self) -> tuple[str, str]:
        """The libpq URL and ``options`` (the URL's own, then the statement time-out) of a PostgreSQL connection."""
        from psycopg.conninfo import conninfo_to_dict

        url = libpq_url(self.url)
        given = str(conninfo_to_dict(url).get("options") or "")
        return url, f"{given} -c statement_timeout={int(self.timeout_s * 1000)}".strip()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection, waited for when :data:`POOL_SIZE` are busy (:class:`DataApiError` 503
        ``database-busy`` after ``timeout_s``). A connection left broken or inside a transaction is closed
        rather than returned; a lost one also closes the idle ones. On PostgreSQL the block's statements must
        be answered within :attr:`allowance_s`, or the connection is cut (the statement raises as a lost
        connection does)."""
        conn = self._take()
        ok = False
        if self._deadlines is not None:
            self._deadlines.arm(conn)
        try:
            yield conn
            ok = True
        finally:
            cut = self._deadlines is not None and self._deadlines.disarm(conn)
            if not cut and (ok or self._reusable(conn)):
                with self._available:
                    self._idle.append(conn)
                    self._available.notify()
            else:
                self._release(conn)
                if cut or self._lost(conn):
                    self.drop_idle()

    def _take(self) -> Any:
        while True:
            conn = self._take_idle()
            if conn is None:
                break
            if self._alive(conn):
                return conn
            self._release(conn)  # the server closed it while it was idle; try the next one
        try:
            self.check_down()
            try:
                return self.connect()
            except DataApiError as exc:
                if exc.code == "database-unavailable":
                    self.mark_down()
                raise
        except BaseException:
            self._release(None)
            raise

    def check_down(self) -> None:
        """Raise the 503 ``database-unavailable`` (with ``Retry-After``) while a failed connection attempt is
        less than :data:`RETRY_AFTER_S` old."""
        if time.monotonic() < self._down_until:
            raise unavailable(self.name, retry_after=True)

    def mark_down(self) -> None:
        """Record a failed connection attempt (see :meth:`check_down`)."""
        self._down_until = time.monotonic() + RETRY_AFTER_S

    def _take_idle(self) -> Any:
        """An idle connection, or None after reserving a place for a new one (waiting while the pool is full)."""
        with self._available:
            if not self._idle and self._open >= POOL_SIZE:
                deadline = time.monotonic() + self.timeout_s
                while not self._idle and self._open >= POOL_SIZE:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DataApiError(
                            f"every connection to '{self.name}' stayed busy for {self.timeout_s:g} s; try again",
                            status=503,
                            code="database-busy",
                        )
                    self._available.wait(remaining)
            if self._idle:
                return self._idle.pop()
            self._open += 1
            return None

    def _alive(self, conn: Any) -> bool:
        """Whether an idle connection may still be open: a PostgreSQL one whose socket has nothing to read
        (the server sends an idle autocommit connection nothing, except its last words when it closes it)."""
        if self.scheme != "postgresql":
            return True
        try:
            return not conn.closed and not readable(conn.pgconn.socket)
        except Exception:  # no socket any more
            return False

    def _lost(self, conn: Any) -> bool:
        """Whether ``conn`` was lost (the server closed it or cannot be reached), not merely refused a statement."""
        try:
            if self.scheme == "postgresql":
                return bool(conn.broken)
            if self.scheme == "mysql":
                return not conn.open
        except Exception:  # a connection that cannot even say its state is lost
            return True
        return False

    def drop_idle(self) -> None:
        """Close the idle connections (after one was lost, the others most likely were too)."""
        with self._available:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._available.notify(len(idle))
        for conn in idle:
            _close(conn)

    def _release(self, conn: Any) -> None:
        _close(conn)
        with self._available:
            self._open -= 1
            self._available.notify()

    def _reusable(self, conn: Any) -> bool:
        """Whether a connection whose statement raised can serve the next request: PostgreSQL's when it is
        not broken and idle outside a transaction, SQLite's outside a transaction; MariaDB's never."""
        try:
            if self.scheme == "postgresql":
                from psycopg.pq import TransactionStatus

                return not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
            if self.scheme == "sqlite":
                return not conn.in_transaction
        except Exception:  # a connection that cannot even say its state is not kept
            return False
        return False

    def execute(self, conn: Any, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement on ``conn`` and return its rows (counted in :attr:`statements`)."""
        self.statements += 1
        try:
            if self.scheme == "sqlite":
                deadline = time.monotonic() + self.timeout_s
                conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
                try:
                    return list(conn.execute(sql, dict(params)).fetchall())
                finally:
                    conn.set_progress_handler(None, 0)
            with conn.cursor() as cur:
                cur.execute(sql, dict(params))
                return list(cur.fetchall()) if cur.description is not None else []
        except Exception as exc:
            raise translate(self.scheme, exc, self.name) from None

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        """A transaction on ``conn``: committed when the block ends, rolled back when it raises."""
        begin = {"postgresql": "BEGIN", "mysql": "START TRANSACTION", "sqlite": "BEGIN IMMEDIATE"}[self.scheme]
        self._raw(conn, begin)
        try:
            yield
        except BaseException:
            self._raw(conn, "ROLLBACK")
            raise
        self._raw(conn, "COMMIT")

    def _raw(self, conn: Any, sql: str) -> None:
        try:
            if self.scheme == "sqlite":
                conn.execute(sql)
            else:
                with conn.cursor() as cur:
                    cur.execute(sql)
        except Exception as exc:
            raise translate(self.scheme, exc, self.name) from None

    # The catalog.

    def _catalog_connection(self) -> Any:
        if self._catalog_conn is None:
            self._catalog_conn = self.connect()
        return self._catalog_conn

    def _with_catalog_conn(self, read: Any) -> Any:
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._catalog_connection()
                    if self._catalog_deadlines is None:
                        return read(conn)
                    self._catalog_deadlines.arm(conn)
                    try:
                        return read(conn)
                    finally:
                        self._catalog_deadlines.disarm(conn)
                except Exception as exc:
                    _close(self._catalog_conn)
                    self._catalog_conn = None
                    if attempt == 2 or isinstance(exc, DataApiError):
                        if isinstance(exc, DataApiError):
                            raise
                        log.warning("data API: cannot read the catalog of '%s': %s", self.name, exc)
                        raise unavailable(self.name) from None
        raise AssertionError("unreachable")

    def read_catalog(self) -> Catalog:
        """The database's tables and views now."""
        module = _catalog_module(self.scheme)
        catalog: Catalog = self._with_catalog_conn(module.read_catalog)
        return catalog

    def fingerprint(self) -> str:
        """A value that changes whenever the database's tables, columns or keys change."""
        module = _catalog_module(self.scheme)
        value: str = self._with_catalog_conn(module.read_fingerprint)
        return value

    def close(self) -> None:
        with self._available:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            _close(conn)
        with self._lock:
            _close(self._catalog_conn)
            self._catalog_conn = None


def _catalog_module(scheme: str) -> Any:
    if scheme == "postgresql":
        from sluice.api import catalog_pg

        return catalog_pg
    if scheme == "mysql":
        from sluice.api import catalog_mysql

        return catalog_mysql
    from sluice.api import catalog_sqlite

    return catalog_sqlite


def _pg_socket(conn: Any) -> int:
    fd: int = conn.pgconn.socket
    return fd


def unavailable(name: str, retry_after: bool = False) -> DataApiError:
    """The 503 ``database-unavailable`` of connection ``name``; ``retry_after``: no attempt was made, the last
    one failed less than :data:`RETRY_AFTER_S` ago (``Retry-After`` header)."""
    headers = {"Retry-After": str(math.ceil(RETRY_AFTER_S))} if retry_after else None
    return DataApiError(f"the database '{name}' cannot be reached", status=503, code="database-unavailable", headers=headers)


def _close(conn: Any) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
        conn.close()


def _too_complex() -> DataApiError:
    """A statement the database's parser refused for its nesting (SQLite's parser stack, PostgreSQL's stack depth)."""
    return DataApiError(
        "the request nests its filters deeper than the database can parse; flatten its _and/_or", code="query-too-deep"
    )


def translate(scheme: str, exc: Exception, name: str) -> Exception:
    """A driver error as what the client is told: :class:`StaleCatalog` (the caller re-reads the catalog and
    retries once), a 400 :class:`DataApiError` for bad values, broken constraints and time-outs, a 503 for
    a lost server (naming the connection ``name``); anything else a 500 ``internal`` error (logged, its text
    never sent)."""
    if scheme == "postgresql":
        state = getattr(exc, "sqlstate", None) or ""
        if state in STALE_SQLSTATES:
            return StaleCatalog(str(exc))
        if state.startswith("23"):
            return _constraint(getattr(getattr(exc, "diag", None), "constraint_name", None), state)
        if state.startswith("22") or type(exc).__name__ == "DataError":  # DataError without SQLSTATE: psycopg's (NUL)
            return _bad_value(state, str(exc))
        if state == "57014":
            return DataApiError("the request took longer than the statement time-out", code="timeout")
        if state in ("54001", "54000"):  # stack depth limit exceeded, statement too complex
            return _too_complex()
        if "number of parameters must be between" in str(exc):  # libpq's bound, before anything is sent
            return DataApiError(
                "the request sends more values than PostgreSQL takes in one statement (65,535): split it, "
                "e.g. a long _in list into several requests",
                code="too-many-values",
            )
        if state.startswith("08") or state in LOST_SQLSTATES or type(exc).__name__ == "OperationalError":
            return unavailable(name)
    elif scheme == "mysql":
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        if code in (1054, 1146):
            return StaleCatalog(str(exc))
        if code in (1062, 1451, 1452, 1048, 1364, 1216, 1217, 4025, 3819):
            return _constraint(None, str(code))
        if code in (1264, 1265, 1292, 1366, 1406, 1367, 3140, 4038, 1690, 1411, 1139, 1918):
            return _bad_value("2201B" if code == 1139 else "22000", str(exc))
        if code in (1436, 3636):  # thread stack overrun, recursion limit
            return _too_complex()
        if code in (1969, 3024):
            return DataApiError("the request took longer than the statement time-out", code="timeout")
        if code in (2003, 2006, 2013):
            return unavailable(name)
    else:
        text = str(exc)
        if text.startswith(("no such column", "no such table")):
            return StaleCatalog(text)
        if isinstance(exc, sqlite3.IntegrityError):
            return _constraint(None, text)
        if text == "interrupted":
            return DataApiError("the request took longer than the statement time-out", code="timeout")
        if text in ("parser stack overflow", "Expression tree is too large (maximum depth 1000)"):
            return _too_complex()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return DataApiError("the database is busy; try again", status=503, code="database-busy")
    log.error("data API: unexpected database error (%s): %s", type(exc).__name__, exc)
    return DataApiError("the database could not answer this request", status=500, code="internal")


def _bad_value(state: str, text: str) -> DataApiError:
    """The 400 ``invalid-value`` of a data exception (SQLSTATE class 22, or psycopg's own refusal of a NUL)."""
    if state == "2201B":
        return DataApiError("a regular expression is invalid", code="invalid-value")
    if "NUL" in text and not state:
        return DataApiError("a text value holds a NUL character (\\u0000), which PostgreSQL refuses", code="invalid-value")
    return DataApiError("a value does not fit its column (type, range or format)", code="invalid-value")


def _constraint(name: str | None, detail: str) -> DataApiError:
    kind = {
        "23505": "unique",
        "23503": "foreign key",
        "23502": "not null",
        "23514": "check",
        "1062": "unique",
        "1451": "foreign key",
        "1452": "foreign key",
        "1048": "not null",
        "1364": "not null",
        "4025": "check",
        "3819": "check",
    }.get(detail)
    if kind is None and "UNIQUE" in detail:
        kind = "unique"
    elif kind is None and "FOREIGN KEY" in detail:
        kind = "foreign key"
    elif kind is None and "NOT NULL" in detail:
        kind = "not null"
    elif kind is None and "CHECK" in detail:
        kind = "check"
    what = f"a {kind} constraint" if kind else "a constraint"
    named = f" ({name})" if name else ""
    return DataApiError(f"the change breaks {what} of the table{named}", code="constraint-violation")
