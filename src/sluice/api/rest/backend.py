"""Running a statement: the small seam between the REST handlers and a database connection.

:class:`Database` hands out a connection inside a transaction (committed when the block ends, rolled back on
an error) and maps driver errors to :class:`RestError` by SQLSTATE (:func:`errors.database_error`), so no driver
text reaches a client. :func:`open_database` gives one for a connection URL (``postgresql://``, ``mysql://``,
``sqlite:///``) with a small pool of connections (one per concurrent request, at most ``size`` kept).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sluice.api.rest.errors import RestError, database_error, mysql_sqlstate
from sluice.api.rest.sql import DIALECTS, Dialect, Frag

log = logging.getLogger("sluice.api.rest")


class Cursor(Protocol):
    """What a transaction offers: run one statement, get its rows."""

    def run(self, frag: Frag) -> list[tuple[Any, ...]]: ...


class Database:
    """Connections of one database, pooled; ``dialect`` tells how to write for it."""

    def __init__(self, dialect: Dialect, connect: Callable[[], Any], *, size: int = 8, timeout_s: float = 10.0) -> None:
        self.dialect = dialect
        self.connect = connect
        self.timeout_s = timeout_s
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue(maxsize=size)
        self.statements = 0  # statements run, for tests asserting one statement per request

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A transaction: commit at the end of the block, roll back (and re-raise) on any exception."""
        try:
            conn = self.idle.get_nowait()
        except queue.Empty:
            conn = self._open()
        ok = False
        try:
            yield _Tx(self, conn)
            conn.commit()
            ok = True
        except RestError:
            conn.rollback()
            ok = True
            raise
        except Exception as exc:
            try:
                conn.rollback()
                ok = True
            except Exception:  # noqa: S110 - the connection is dropped below
                pass
            raise self._translate(exc) from None
        finally:
            if ok:
                try:
                    self.idle.put_nowait(conn)
                except queue.Full:
                    conn.close()
            else:
                _close(conn)

    def _open(self) -> Any:
        try:
            return self.connect()
        except Exception as exc:
            log.warning("data API: cannot connect: %s", exc)
            raise RestError("the database cannot be reached", status=503, code="SLR503") from None

    def _translate(self, exc: Exception) -> RestError:
        sqlstate = _sqlstate(exc)
        error = database_error(sqlstate)
        if error.status >= 500:
            log.warning("data API: statement failed (%s): %s", sqlstate, exc)
        return error

    def close(self) -> None:
        while True:
            try:
                _close(self.idle.get_nowait())
            except queue.Empty:
                return


class _Tx:
    def __init__(self, db: Database, conn: Any) -> None:
        self.db = db
        self.conn = conn

    def run(self, frag: Frag) -> list[tuple[Any, ...]]:
        text, params = self.db.dialect.finish(frag)
        self.db.statements += 1
        cur = self.conn.cursor()
        try:
            cur.execute(text, params)
            return list(cur.fetchall()) if cur.description is not None else []
        finally:
            cur.close()


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection
        conn.close()


def _sqlstate(exc: Exception) -> str | None:
    module = type(exc).__module__
    if module.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return mysql_sqlstate(exc.args[0])
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state
    if module.startswith("psycopg"):
        name = type(exc).__name__
        return "22000" if name == "DataError" else "08000" if name == "OperationalError" else None
    if module.startswith("pymysql") and exc.args and isinstance(exc.args[0], int):
        return mysql_sqlstate(exc.args[0])
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc).upper()
        for marker, state in (
            ("UNIQUE", "23505"),
            ("PRIMARY KEY", "23505"),
            ("FOREIGN KEY", "23503"),
            ("NOT NULL", "23502"),
            ("CHECK", "23514"),
        ):
            if marker in text:
                return state
        return "23000"
    if isinstance(exc, sqlite3.DataError | OverflowError | sqlite3.ProgrammingError):
        return "22000"
    if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
        return "57014"
    return None


def open_database(url: str, *, timeout_s: float = 10.0, size: int = 8) -> Database:
    """A :class:`Database` for ``url``; statements time out after ``timeout_s`` seconds."""
    from sluice.urls import connection_scheme

    scheme = connection_scheme(url)
    if scheme == "postgresql":
        return Database(DIALECTS["postgresql"], lambda: _pg(url, timeout_s), size=size, timeout_s=timeout_s)
    if scheme == "mysql":
        return Database(DIALECTS["mysql"], lambda: _mysql(url, timeout_s), size=size, timeout_s=timeout_s)
    if scheme == "sqlite":
        return Database(DIALECTS["sqlite"], lambda: _sqlite(url), size=size, timeout_s=timeout_s)
    raise RestError(f"the data API does not serve {scheme}:// connections", status=500)


def _pg(url: str, timeout_s: float) -> Any:
    import psycopg

    from sluice.urls import libpq_url

    ms = int(timeout_s * 1000)
    return psycopg.connect(libpq_url(url), options=f"-c statement_timeout={ms}", connect_timeout=10)


def _mysql(url: str, timeout_s: float) -> Any:
    from urllib.parse import unquote, urlsplit

    import pymysql

    parts = urlsplit(url)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or None,
        charset="utf8mb4",
        autocommit=False,
        connect_timeout=10,
    )
    with conn.cursor() as cur:
        cur.execute("SET SESSION group_concat_max_len = 1073741824")
        cur.execute(f"SET SESSION max_statement_time = {float(timeout_s)}")
    return conn


def _sqlite(url: str) -> Any:
    from sluice.urls import sqlite_path

    conn = sqlite3.connect(sqlite_path(url), check_same_thread=False, timeout=10)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def rows_of(result: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The single row of a ``SELECT total, count, body`` statement."""
    if len(result) != 1:
        raise RestError("the database failed to answer the request", status=500, code="SLR500")
    return result[0]
