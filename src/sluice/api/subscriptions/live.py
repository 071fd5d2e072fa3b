"""Live queries: run a subscription once, then again after each change of a table it reads; push changed results.

:class:`SubscriptionHub` is shared by the WebSocket and SSE transports of one server. Subscriptions with the
same document, variables, operation name, role, subject and claims share one :class:`LiveQuery` (one SQL
statement per run, whatever the number of subscribers: Hasura's multiplexing idea). A run happens

1. when the live query is created: its result is the subscriber's first ``next`` (a refusal, such as a
   missing permission, is the subscription's ``error`` instead);
2. after each window of change messages on a topic of a table it reads (:mod:`.feeds`); a change arriving
   during a run makes one more run after it (never two at a time, never one per change).

A result is pushed only when it differs from the last one pushed (an xxh3-128 digest of its JSON bytes), so
a change outside a subscription's filter, or one its ``limit`` leaves out, pushes nothing. Results are the
whole answer (Hasura's live-query semantics), not a diff; a subscriber gets the latest state, not every
intermediate one (see docs/api/subscriptions.md).

Everything but the runs (in worker threads, at most :data:`RUNNERS` at a time) happens on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import xxhash
from graphql import DocumentNode, OperationType

from sluice.api.execute import answer_error, run_live
from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable
from sluice.api.principal import Principal
from sluice.api.service import DataApi, SchemaState
from sluice.api.subscriptions import metrics
from sluice.api.subscriptions.feeds import WINDOW_S, Feeds
from sluice.api.subscriptions.shape import Shape, operation_kind, subscription_shape
from sluice.api.subscriptions.sources import Feed, missing_feed_message
from sluice.bus.base import Bus
from sluice.errors import BusError

log = logging.getLogger("sluice.api.subscriptions")

RUNNERS = 8
"""Live-query runs at a time (worker threads), so a burst of changes leaves threads to the HTTP handlers."""

Resolver = Callable[[ExposedTable], list[Feed]]
"""The feeds of a served table (:func:`sluice.api.subscriptions.sources.feeds_for` over the project's syncs)."""
Send = Callable[[bytes], None]
"""Delivers one result (an ExecutionResult as JSON bytes) to a subscriber; called on the event loop."""
End = Callable[[], None]
"""Ends a subscriber's stream (the server is stopping); called on the event loop."""


@dataclass(eq=False)
class Subscription:
    """One subscriber of a :class:`LiveQuery`."""

    id: int
    query: LiveQuery
    role: str
    send: Send
    end: End


@dataclass(eq=False)
class LiveQuery:
    """One document run for every subscriber sharing it (see the module)."""

    key: tuple[str, ...]
    text: str
    variables: dict[str, Any]
    name: str | None
    principal: Principal
    shape: Shape
    topics: frozenset[str]
    ready: asyncio.Future[None]
    subscribers: dict[int, Subscription] = field(default_factory=dict)
    body: bytes = b""
    digest: bytes = b""
    running: bool = False
    dirty: bool = False
    waiting: int = 0
    dropped: bool = False


def _subscribes(document: DocumentNode) -> bool:
    """``document`` holds a subscription operation (graphql-core validates one against a schema without
    subscription type without complaint)."""
    return any(getattr(d, "operation", None) == OperationType.SUBSCRIPTION for d in document.definitions)


def _key(text: str, variables: dict[str, Any], name: str | None, principal: Principal) -> tuple[str, ...]:
    claims = json.dumps(dict(principal.claims), sort_keys=True, default=str)
    values = json.dumps(variables, sort_keys=True, default=str)
    return (text, values, name or "", principal.role, principal.subject or "", claims)


class SubscriptionHub:
    """The live queries of one served API. ``bus``: the bus holding the syncs' change topics (or a function
    returning it, read at :meth:`start`); ``resolve``: the feeds of a served table; ``sync_names``: the
    project's syncs, named when a table has no feed."""

    def __init__(
        self,
        api: DataApi,
        resolve: Resolver,
        bus: Bus | Callable[[], Bus],
        *,
        sync_names: Sequence[str] = (),
        window_s: float = WINDOW_S,
        runners: int = RUNNERS,
    ) -> None:
        self.api = api
        self.resolve = resolve
        self.sync_names = list(sync_names)
        self._bus = bus
        self.window_s = window_s
        self.runners = runners
        self.per_connection = api.settings.limits.subscriptions.per_connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feeds: Feeds | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._queries: dict[tuple[str, ...], LiveQuery] = {}
        self._by_topic: dict[str, set[LiveQuery]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.closed = False

    # Life cycle (on the event loop's thread).

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver change notices on ``loop``; feeds start with the first subscription of each table."""
        self._loop = loop
        bus = self._bus if isinstance(self._bus, Bus) else self._bus()
        self._feeds = Feeds(bus, self._notify, self.window_s)

    def close_streams(self) -> None:
        """End every subscriber's stream (the server is stopping)."""
        self.closed = True
        for query in list(self._queries.values()):
            for subscription in list(query.subscribers.values()):
                subscription.end()

    def close(self) -> None:
        """Stop the feeds (blocking: call from a worker thread)."""
        self.closed = True
        if self._feeds is not None:
            self._feeds.close()

    # Subscribing (event loop).

    async def kind(self, text: str, name: str | None) -> OperationType:
        """The operation type of document ``text`` (``name`` picks one); :class:`DataApiError` 400 when it does not
        parse or validate."""
        return operation_kind((await self._parsed(text))[1], name)

    async def _parsed(self, text: str) -> tuple[SchemaState, DocumentNode]:
        """The current schema and ``text`` validated against it; on validation errors the catalogs are read
        again once (a table just created by a sync's apply), as queries do (:mod:`sluice.api.execute`)."""
        started = time.monotonic()
        for attempt in (1, 2):
            state = await anyio.to_thread.run_sync(self.api.state)
            parsed = await anyio.to_thread.run_sync(self.api.parsed, text, state)
            errors = [e.message for e in parsed.errors]
            if (
                parsed.document is not None
                and not errors
                and state.schema.subscription_type is None
                and _subscribes(parsed.document)
            ):
                errors = ["the schema has no subscription field: no table is exposed yet (api.sources)"]
            if errors and parsed.document is not None and attempt == 1:
                fresh = await anyio.to_thread.run_sync(self.api.refresh, True, started)
                if fresh.version != state.version:
                    continue
            if errors or parsed.document is None:
                raise DataApiError(errors[0], code="validation-failed" if parsed.document is not None else "parse-failed")
            return state, parsed.document
        raise AssertionError("unreachable")

    async def subscribe(
        self, principal: Principal, text: str, variables: dict[str, Any], name: str | None, send: Send, end: End
    ) -> Subscription:
        """Start a subscription: its first result is sent (``send``) before this returns. Raises
        :class:`DataApiError`: 400 (invalid document, a table no sync covers), 403 (permissions), 503 (the bus)."""
        if self.closed or self._feeds is None:
            raise DataApiError("the server is stopping", status=503, code="unavailable")
        key = _key(text, variables, name, principal)
        query = self._queries.get(key)
        if query is None:
            query = await self._create(key, principal, text, variables, name)
        query.waiting += 1
        try:
            await asyncio.shield(query.ready)
        except BaseException:  # refused, or the subscriber left while the first run ran
            query.waiting -= 1
            self._drop_if_unused(query)
            raise
        query.waiting -= 1
        subscription = Subscription(next(self._ids), query, principal.role, send, end)
        query.subscribers[subscription.id] = subscription
        metrics.ACTIVE.labels(query.shape.base, principal.role).inc()
        self._push(subscription, query.body)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop sending to ``subscription`` (the client completed it or left)."""
        query = subscription.query
        if query.subscribers.pop(subscription.id, None) is not None:
            metrics.ACTIVE.labels(query.shape.base, subscription.role).dec()
        self._drop_if_unused(query)

    async def _create(
        self, key: tuple[str, ...], principal: Principal, text: str, variables: dict[str, Any], name: str | None
    ) -> LiveQuery:
        state, document = await self._parsed(text)
        shape = subscription_shape(state, document, name, variables, principal)
        state.permissions.access(principal, state.model.tables[shape.base], "select")  # 403 before "no change events"
        feeds: list[Feed] = []
        for base in sorted(shape.tables):
            table = state.model.tables[base]
            found = self.resolve(table)
            if not found:
                raise DataApiError(missing_feed_message(table.base, table.connection, self.sync_names), code="not-live")
            feeds += found
        assert self._feeds is not None
        try:
            await anyio.to_thread.run_sync(self._feeds.ensure, feeds)
        except BusError as exc:
            log.warning("live subscriptions: cannot read the change topics: %s", exc)
            message = "the change events cannot be read from the bus now; try again"
            raise DataApiError(message, status=503, code="unavailable") from None
        existing = self._queries.get(key)  # another subscriber created it meanwhile
        if existing is not None:
            return existing
        loop = asyncio.get_running_loop()
        query = LiveQuery(key, text, variables, name, principal, shape, frozenset(f.topic for f in feeds), loop.create_future())
        self._queries[key] = query
        for topic in query.topics:
            self._by_topic.setdefault(topic, set()).add(query)
        self._start_run(query)
        return query

    def _drop_if_unused(self, query: LiveQuery) -> None:
        if query.subscribers or query.waiting or query.dropped or not query.ready.done():
            return
        query.dropped = True
        if self._queries.get(query.key) is query:
            del self._queries[query.key]
        for topic in query.topics:
            watchers = self._by_topic.get(topic)
            if watchers is not None:
                watchers.discard(query)
                if not watchers:
                    del self._by_topic[topic]

    # Runs (event loop, the statement in a worker thread).

    def _notify(self, topic: str) -> None:
        """A feed saw a window of changes on ``topic`` (called from the feed's thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._changed, topic)

    def _changed(self, topic: str) -> None:
        for query in list(self._by_topic.get(topic, ())):
            if query.running:
                query.dirty = True
            else:
                self._start_run(query)

    def _start_run(self, query: LiveQuery) -> None:
        query.running = True
        task = asyncio.get_running_loop().create_task(self._run(query))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, query: LiveQuery) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.runners)
        try:
            while not query.dropped:
                query.dirty = False
                body, error = await self._once(query)
                if not query.ready.done():
                    if error is not None:
                        metrics.RUNS.labels(query.shape.base, "error").inc()
                        query.ready.set_exception(error)
                        query.ready.exception()  # retrieved: the waiting subscribers re-raise it
                        self._drop_if_unused(query)
                        return
                    query.body, query.digest = body, xxhash.xxh3_128_digest(body)
                    metrics.RUNS.labels(query.shape.base, "first").inc()
                    query.ready.set_result(None)
                else:
                    digest = xxhash.xxh3_128_digest(body)
                    changed = digest != query.digest
                    metrics.RUNS.labels(query.shape.base, "error" if error else "changed" if changed else "same").inc()
                    if changed:
                        query.body, query.digest = body, digest
                        for subscription in list(query.subscribers.values()):
                            self._push(subscription, body)
                if not query.dirty:
                    return
        finally:
            query.running = False

    async def _once(self, query: LiveQuery) -> tuple[bytes, DataApiError | None]:
        """One run: the ExecutionResult's bytes, and the error when the run was refused or failed."""
        try:
            data = await anyio.to_thread.run_sync(
                run_live, self.api, query.text, query.variables, query.name, query.principal, limiter=self._limiter
            )
        except DataApiError as exc:
            return answer_error(exc).body, exc
        except Exception:
            log.exception("live subscriptions: a run of %s failed", query.shape.field)
            failure = DataApiError("the subscription's query failed", status=500, code="internal")
            return answer_error(failure).body, failure
        return b'{"data":' + data + b"}", None

    def _push(self, subscription: Subscription, body: bytes) -> None:
        metrics.PUSHES.labels(subscription.query.shape.base, subscription.role).inc()
        subscription.send(body)
