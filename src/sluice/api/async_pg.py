"""PostgreSQL statements run on the event loop with asyncpg, for cached query plans.

A GraphQL POST whose plan is cached (:mod:`sluice.api.plans`), on PostgreSQL, from a request the gate admits
without blocking (:meth:`SecurityGate.admit_nowait`), runs its one statement here instead of in a worker
thread: no thread hop, no GIL handed between threads. The statement is the plan's positional form
(:class:`~sluice.api.plans.Positional`, ``$1``... made when the plan was), prepared once per connection and
run with asyncpg (MagicStack, Apache-2.0), whose protocol is compiled (Cython) and keeps each connection's
socket registered with the loop: psycopg 3's ``AsyncConnection``, used here before, waits for each reply
with an ``add_reader``/``remove_reader`` pair and runs its protocol in Python (about 55 µs of CPU per
statement on the loop). Measured on the bench's primary-key query (``sluice serve`` on its ``apibench``
project, wrk with 16 connections, per-request log off, three runs each): the server's CPU per request went
from 0.112-0.127 ms with psycopg to 0.076-0.081 ms with asyncpg (this module with the changes that came with
it: no ``asyncio.wait_for`` per waiting request, no ``get_running_loop`` per request). asyncpg's statement
cache must stay on (its default): with ``statement_cache_size=0`` its prepared statements are unnamed and
parsed again on every run (a Parse message and a second write per request). Everything else (the thread
path, mutations, the catalog) stays on psycopg.

The two drivers must answer alike, so a request keeps the thread path (psycopg) when they might not:
a parameter value that is not an ``int``, ``str``, ``bool`` or None (:meth:`Plan.args`), a value asyncpg
refuses to encode for the type PostgreSQL inferred (a ``BigInt`` beyond ``bigint``'s range: psycopg sends it
as ``numeric`` and finds no row), a statement PostgreSQL refuses to prepare without psycopg's
parameter types (remembered per pool: later requests go to the thread path at once), a catalog change
(:class:`StaleCatalog`), or a connection URL with a query parameter asyncpg does not take as libpq does
(:data:`URL_PARAMETERS`) or a libpq environment variable asyncpg does not read (:data:`LIBPQ_ENVIRONMENT`,
e.g. ``PGTZ``): that database never uses this path.

:class:`AsyncPool` keeps at most :data:`~sluice.api.databases.POOL_SIZE` connections (its own, beside the
database's sync pool), opened with the same URL and ``options`` as the sync ones (autocommit, which asyncpg
always is outside a transaction; the statement time-out); a request that finds them all busy waits up to the
time-out, then 503 ``database-busy``. Server errors are translated as the sync path does
(:func:`sluice.api.databases.translate`, by SQLSTATE); a lost connection is a 503 ``database-unavailable``,
as psycopg's ``OperationalError`` is; a connection lost or left mid-statement (its request cancelled) is
closed, not reused. As on the thread path (:class:`~sluice.api.databases.Database`), a database that stops
answering fails requests fast: a new connection waits at most ``connect_timeout_s``, a statement not answered
within ``allowance_s`` (asyncpg's ``timeout``) loses its connection, an idle connection the server closed
(asyncpg notices on the loop) is dropped before use, and a lost connection closes the idle ones. A pool
belongs to the loop that first used it; :meth:`AsyncPool.close` ends its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import urllib.parse
from collections import deque
from typing import Any

from graphql import OperationType
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast

from sluice.api import metrics
from sluice.api.databases import POOL_SIZE, STALE_SQLSTATES, Database, StaleCatalog, translate, unavailable
from sluice.api.execute import Answer, answer_error, request_parts
from sluice.api.gate import DataApiError
from sluice.api.plans import PLAN_CACHE_SIZE, plan_key
from sluice.api.principal import Principal
from sluice.api.service import DataApi

log = logging.getLogger("sluice.api")
_NONE: Any = object()


URL_PARAMETERS = frozenset(
    {"host", "port", "user", "password", "dbname", "database", "passfile", "options", "application_name"}
    | {"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "target_session_attrs"}
)
"""Query parameters of a PostgreSQL URL that asyncpg reads as libpq does (asyncpg's ``connect`` documents
them; it would send any other as a server setting, which a libpq parameter such as ``connect_timeout`` or
``keepalives`` is not). A URL with another one keeps its requests on the thread path."""

LIBPQ_ENVIRONMENT = ("PGTZ", "PGDATESTYLE", "PGGEQO", "PGCLIENTENCODING", "PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE")
"""Environment variables that libpq reads and asyncpg does not (session settings such as the time zone that
JSON answers show, or where to connect): with one of them set, requests keep the thread path."""

Pair = tuple[Any, dict[str, Any]]
"""An asyncpg connection and its prepared statements by SQL text."""


def asyncpg_arguments(database: Database) -> tuple[str, dict[str, str]] | None:
    """The DSN and server settings (``options``: the statement time-out) of ``database``'s asyncpg connections;
    None when asyncpg is not installed, the URL has a parameter outside :data:`URL_PARAMETERS` or one of
    :data:`LIBPQ_ENVIRONMENT` is set."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return None
    if any(os.environ.get(name) for name in LIBPQ_ENVIRONMENT):
        return None
    url, options = database.postgres_arguments()
    query = urllib.parse.urlsplit(url).query
    names = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    if not names <= URL_PARAMETERS:
        return None
    return url, {"options": options}


class AsyncPool:
    """Event-loop connections to ``database`` (a PostgreSQL one; ``arguments`` from :func:`asyncpg_arguments`).
    Raises :class:`DataApiError` 503 when the server cannot be reached or every connection stays busy for the
    statement time-out."""

    def __init__(self, database: Database, arguments: tuple[str, dict[str, str]]) -> None:
        self.database = database
        self.arguments = arguments
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.refused: set[str] = set()
        """Statements PostgreSQL would not prepare from asyncpg (their requests take the thread path)."""
        self._idle: list[Pair] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[Pair | None]] = deque()
        self._closed = False

    async def execute(self, sql: str, args: list[Any]) -> list[Any] | None:
        """Run one statement (``$n`` placeholders, ``args`` in order) and return its rows (counted in
        ``database.statements``); None when psycopg must run it instead (see the module: the statement
        cannot be prepared, or a value cannot be encoded, before anything ran); :class:`StaleCatalog` or
        :class:`DataApiError` as :meth:`Database.execute` raises them."""
        import asyncpg

        if sql in self.refused:
            return None
        pair = await self._take()
        ok = False
        try:
            conn, statements = pair
            statement = statements.get(sql)
            if statement is None:
                try:
                    statement = await conn.prepare(sql)
                except asyncpg.PostgresError as exc:
                    if isinstance(exc, asyncpg.PostgresConnectionError):
                        raise
                    if getattr(exc, "sqlstate", None) not in STALE_SQLSTATES:  # stale: psycopg re-reads the catalog
                        self.refused.add(sql)
                    ok = True
                    return None
                statements[sql] = statement
                if len(statements) > PLAN_CACHE_SIZE:
                    statements.pop(next(iter(statements)))
            try:
                rows: list[Any] = await statement.fetch(*args, timeout=self.database.allowance_s)
            except (asyncpg.DataError, asyncpg.InterfaceError) as exc:
                if _not_encoded(exc):
                    ok = True
                    return None
                raise
            self.database.statements += 1
            ok = True
            return rows
        except asyncpg.PostgresError as exc:
            self.database.statements += 1
            error = translate("postgresql", exc, self.database.name)
            if isinstance(exc, asyncpg.PostgresConnectionError) or (isinstance(error, DataApiError) and error.status == 503):
                self._drop_idle()
                raise unavailable(self.database.name) from None
            ok = True  # the server refused the statement; the connection is fine
            raise error from None
        except (asyncpg.InterfaceError, OSError, TimeoutError):  # lost, closed or not answered in time
            log.warning("data API: '%s' did not answer a statement", self.database.name)
            self._drop_idle()
            raise unavailable(self.database.name) from None
        finally:
            # Not ok: lost, or cancelled mid-statement (asyncpg would still be cancelling it): not kept.
            self._give(pair, ok)

    async def _take(self) -> Pair:
        while self._idle:
            idle = self._idle.pop()
            if not idle[0].is_closed():
                return idle
            self._open -= 1  # the server closed it while it was idle
            self._discard(idle[0])
        if self._open < POOL_SIZE:
            return await self._connect()
        waiter: asyncio.Future[Pair | None] = self.loop.create_future()
        self._waiters.append(waiter)
        # A timer on the future rather than asyncio.wait_for, which wraps it in a task of its own: half the
        # requests of a busy pool wait here.
        timer = self.loop.call_later(self.database.timeout_s, _expire, waiter)
        try:
            pair = await waiter
        except TimeoutError:
            raise DataApiError(
                f"every connection to '{self.database.name}' stayed busy for {self.database.timeout_s:g} s; try again",
                status=503,
                code="database-busy",
            ) from None
        finally:
            timer.cancel()
        return pair if pair is not None else await self._connect()

    async def _connect(self) -> Pair:
        import asyncpg

        self._open += 1
        try:
            self.database.check_down()
            url, settings = self.arguments
            conn = await asyncpg.connect(url, server_settings=settings, timeout=self.database.connect_timeout_s)
        except Exception as exc:
            self._open -= 1
            self._wake(None)
            if isinstance(exc, DataApiError):
                raise
            self.database.mark_down()
            log.warning("data API: cannot connect to '%s': %s", self.database.name, exc)
            raise unavailable(self.database.name) from None
        return conn, {}

    def _give(self, pair: Pair, ok: bool) -> None:
        if self._closed or not ok or pair[0].is_closed():
            self._open -= 1
            self._discard(pair[0])
            self._wake(None)  # a waiter opens a connection of its own
            return
        if not self._wake(pair):
            self._idle.append(pair)

    def _wake(self, pair: Pair | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(pair)
                return True
        return False

    def _drop_idle(self) -> None:
        """Close the idle connections (after one was lost, the others most likely were too)."""
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn, _ in idle:
            self._discard(conn)
            self._wake(None)

    def _discard(self, conn: Any) -> None:
        with contextlib.suppress(Exception):  # already closed: nothing more to do
            conn.terminate()  # at once: it may be lost, or still cancelling a statement

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn, _ in idle:
            await _close(conn)


def _not_encoded(exc: Exception) -> bool:
    """Whether ``exc`` is asyncpg's refusal to encode an argument ("invalid input for query argument $n", before
    anything is sent): a ``DataError`` that no server sent (no severity), or in some versions an
    ``InterfaceError`` that is also a ``ValueError``."""
    import asyncpg

    if isinstance(exc, asyncpg.DataError):
        return getattr(exc, "severity", None) is None
    return isinstance(exc, ValueError)


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():  # _wake skips it from now on
        waiter.set_exception(TimeoutError())


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
        await conn.close(timeout=5)


def pool_of(api: DataApi, connection: str) -> AsyncPool | None:
    """The event-loop pool of ``connection`` on the running loop; None when it is not PostgreSQL, asyncpg cannot
    connect to it as libpq would (:func:`asyncpg_arguments`) or its pool belongs to another loop (that request
    takes the thread path)."""
    pool: AsyncPool | None = api.async_pools.get(connection, _NONE)
    if pool is _NONE:
        database = api.databases[connection]
        arguments = asyncpg_arguments(database) if database.scheme == "postgresql" else None
        pool = api.async_pools[connection] = None if arguments is None else AsyncPool(database, arguments)
    # The pool's loop is the running one when it runs in this thread (one loop runs per thread at a time); asked
    # so rather than with asyncio.get_running_loop(), which makes a getpid() system call on each request.
    if pool is None or pool.thread != threading.get_ident() or not pool.loop.is_running():
        return None
    return pool


async def answer_planned(api: DataApi, body: Any, principal: Principal) -> Answer | None:
    """The answer to ``body`` when it is one query operation whose plan is cached and runs on PostgreSQL
    (its statement run on the loop, the request counted and logged as :func:`sluice.api.execute.run_request`
    does); None for anything else, which the caller answers in a worker thread as usual (a batch, a document
    not yet cached or invalid, a mutation, a plan not cached yet, another database, a stale catalog)."""
    started = time.perf_counter()
    state = api.current_state()
    if state is None or not isinstance(body, dict):
        return None
    try:
        query, variables, name = request_parts(body)
    except DataApiError:
        return None
    parsed = api.cached(query, state)
    if parsed is None or parsed.errors or parsed.document is None:
        return None
    operation = get_operation_ast(parsed.document, name)
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    coerced = get_variable_values(state.schema, operation.variable_definitions, variables)
    if isinstance(coerced, list):
        return None
    plan = api.plans.get(plan_key(query, name, state.version, principal, coerced))
    if plan is None:
        return None
    pool = pool_of(api, plan.connection)
    if pool is None:
        return None
    args = plan.args(pool.database.dialect, coerced)
    if args is None or plan.positional is None:
        return None
    try:
        rows = await pool.execute(plan.positional.sql, args)
    except StaleCatalog:
        return None  # the thread path re-reads the catalog and answers from the new schema
    except DataApiError as exc:
        metrics.observe(api.name, plan.label, principal.role, exc.status, exc.code, time.perf_counter() - started)
        return answer_error(exc)
    if rows is None:
        return None  # psycopg runs it (see the module)
    text = rows[0][0]
    data = text.encode() if isinstance(text, str) else bytes(text)
    metrics.observe(api.name, plan.label, principal.role, 200, None, time.perf_counter() - started)
    return Answer(200, b'{"data":' + data + b"}", {})
