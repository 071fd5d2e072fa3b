"""PostgreSQL statements run on the event loop (psycopg 3's ``AsyncConnection``), for cached query plans.

A GraphQL POST whose plan is cached (:mod:`sluice.api.plans`), on PostgreSQL, from a request the gate admits
without blocking (:meth:`SecurityGate.admit_nowait`), runs its one statement here instead of in a worker
thread: no thread hop, no GIL handed between threads. Measured with the bench's primary-key statement, 16
in flight over 8 connections: about 55 µs of CPU per statement on the loop against about 87 µs through a
thread pool with the sync driver, at the same throughput.

:class:`AsyncPool` keeps at most :data:`~sluice.api.databases.POOL_SIZE` connections (its own, beside the
database's sync pool), opened like the sync ones (autocommit, the statement time-out, statements prepared
on their second run); a request that finds them all busy waits up to the time-out, then 503
``database-busy``. Errors are translated as the sync path does (:func:`sluice.api.databases.translate`). A
pool belongs to the loop that first used it; :meth:`AsyncPool.close` ends its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from graphql import OperationType
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast

from sluice.api import metrics
from sluice.api.databases import POOL_SIZE, PREPARE_THRESHOLD, Database, StaleCatalog, translate
from sluice.api.execute import Answer, answer_error, request_parts
from sluice.api.gate import DataApiError
from sluice.api.plans import plan_key
from sluice.api.principal import Principal
from sluice.api.service import DataApi

log = logging.getLogger("sluice.api")


class AsyncPool:
    """Event-loop connections to ``database`` (a PostgreSQL one). Raises :class:`DataApiError` 503 when the
    server cannot be reached or every connection stays busy for the statement time-out."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.loop = asyncio.get_running_loop()
        self._idle: list[tuple[Any, Any]] = []
        """(connection, its cursor) pairs ready for a statement."""
        self._open = 0
        self._waiters: deque[asyncio.Future[tuple[Any, Any] | None]] = deque()
        self._closed = False

    async def execute(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (counted in ``database.statements``); :class:`StaleCatalog`
        or :class:`DataApiError` as :meth:`Database.execute` raises them."""
        pair = await self._take()
        ok = False
        try:
            self.database.statements += 1
            cursor = pair[1]  # one cursor per connection, run again for each statement
            await cursor.execute(sql, dict(params))
            rows: list[tuple[Any, ...]] = list(await cursor.fetchall())
            ok = True
            return rows
        except Exception as exc:
            raise translate("postgresql", exc) from None
        finally:
            self._give(pair, ok)

    async def _take(self) -> tuple[Any, Any]:
        if self._idle:
            return self._idle.pop()
        if self._open < POOL_SIZE:
            return await self._connect()
        waiter: asyncio.Future[tuple[Any, Any] | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            pair = await asyncio.wait_for(waiter, self.database.timeout_s)
        except TimeoutError:
            raise DataApiError(
                f"every connection to '{self.database.name}' stayed busy for {self.database.timeout_s:g} s; try again",
                status=503,
                code="database-busy",
            ) from None
        return pair if pair is not None else await self._connect()

    async def _connect(self) -> tuple[Any, Any]:
        import psycopg

        self._open += 1
        try:
            url, options = self.database.postgres_arguments()
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, options=options)
        except Exception as exc:
            self._open -= 1
            self._wake(None)
            log.warning("data API: cannot connect to '%s': %s", self.database.name, exc)
            raise DataApiError(
                f"the database '{self.database.name}' cannot be reached", status=503, code="database-unavailable"
            ) from None
        conn.prepare_threshold = PREPARE_THRESHOLD
        return conn, conn.cursor()

    def _give(self, pair: tuple[Any, Any], ok: bool) -> None:
        if self._closed or not (ok or _reusable(pair[0])):
            self._open -= 1
            self._discard(pair[0])
            self._wake(None)  # a waiter opens a connection of its own
            return
        if not self._wake(pair):
            self._idle.append(pair)

    def _wake(self, pair: tuple[Any, Any] | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(pair)
                return True
        return False

    def _discard(self, conn: Any) -> None:
        task = self.loop.create_task(_close(conn))
        task.add_done_callback(lambda _: None)

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn, _ in idle:
            await _close(conn)


def _reusable(conn: Any) -> bool:
    from psycopg.pq import TransactionStatus

    try:
        return not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
    except Exception:  # a connection that cannot say its state is not kept
        return False


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection: nothing more to do
        await conn.close()


def pool_of(api: DataApi, connection: str) -> AsyncPool | None:
    """The event-loop pool of ``connection`` on the running loop; None when it is not PostgreSQL or its pool
    belongs to another loop (that request takes the thread path)."""
    pool: AsyncPool | None = api.async_pools.get(connection)
    if pool is None:
        database = api.databases[connection]
        if database.scheme != "postgresql":
            return None
        pool = api.async_pools[connection] = AsyncPool(database)
    return pool if pool.loop is asyncio.get_running_loop() else None


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
    try:
        rows = await pool.execute(plan.sql, plan.params(pool.database.dialect, coerced))
    except StaleCatalog:
        return None  # the thread path re-reads the catalog and answers from the new schema
    except DataApiError as exc:
        metrics.observe(api.name, plan.label, principal.role, exc.status, exc.code, time.perf_counter() - started)
        return answer_error(exc)
    text = rows[0][0]
    data = text.encode() if isinstance(text, str) else bytes(text)
    metrics.observe(api.name, plan.label, principal.role, 200, None, time.perf_counter() - started)
    return Answer(200, b'{"data":' + data + b"}", {})
