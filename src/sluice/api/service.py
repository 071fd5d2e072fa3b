"""The served data API: its databases, the schema that follows their catalogs, and parsed documents.

:class:`DataApi` keeps one :class:`SchemaState` (model, GraphQL schema, permissions, a version number).
A background thread compares each database's catalog fingerprint every :data:`CHECK_INTERVAL_S` seconds and
rebuilds the state when one changed; a request also forces a check (and the rebuild) when its document
names a field the schema lacks or the database answers "no such table/column", then runs again once, so
a migration shows up without a restart and no request fails because of a stale schema.

Parsed and validated documents are cached (LRU of :data:`DOCUMENT_CACHE_SIZE`) by document text and
schema version. A document nested too deep for the parser is refused first (400 ``query-too-deep``,
:mod:`sluice.api.nesting`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse, specified_rules, validate

from sluice.api.catalog import Catalog
from sluice.api.databases import Database
from sluice.api.gate import DataApiError, Gate
from sluice.api.model import Model, build_model
from sluice.api.nesting import check_document, too_deep
from sluice.api.permissions import Permissions
from sluice.api.plans import PlanCache
from sluice.api.schema import RootField, build_schema
from sluice.api.settings import ApiSettings
from sluice.api.sync_fields import SyncRunner, sync_mutation_fields

log = logging.getLogger("sluice.api")
CHECK_INTERVAL_S = 2.0
DOCUMENT_CACHE_SIZE = 1000
MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(slots=True)
class SchemaState:
    """One generation of the schema; ``version`` grows by one with each rebuild."""

    version: int
    model: Model
    schema: GraphQLSchema
    roots: dict[tuple[str, str], RootField]
    permissions: Permissions
    fingerprints: dict[str, str]
    checked_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A document read and validated against one schema version (``errors`` empty when valid)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]


class DataApi:
    """The ``api:`` section served: ``connections`` maps connection names to URLs, ``root`` is the project
    folder (SQLite paths), ``gate`` authenticates and limits requests."""

    def __init__(
        self, settings: ApiSettings, connections: dict[str, str], root: Path | None, gate: Gate, name: str = "graphql"
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.name = name
        timeout = settings.limits.graphql.timeout_s
        used = [s.connection for s in settings.sources] + list(settings.mutations.values())
        self.databases = {n: Database(n, connections[n], root, timeout) for n in dict.fromkeys(used)}
        self._state: SchemaState | None = None
        self._refresh_lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], Parsed] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.plans = PlanCache()
        """Compiled query plans (:mod:`sluice.api.plans`), emptied when the schema is rebuilt."""
        self.async_pools: dict[str, Any] = {}
        """Event-loop connections by connection name (:class:`sluice.api.async_pg.AsyncPool`, or None for a
        database that never uses them), made on first use."""
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.sync_runner: SyncRunner | None = None
        """Runs the passes of ``api.sync_mutations`` (``sluice serve`` sets it; None: those fields answer 503)."""

    # Lifecycle.

    def start(self, watch: bool = True) -> None:
        """Read the catalogs (a database that cannot be reached is logged and retried on the next request)
        and start the catalog watcher."""
        try:
            self.refresh(force=True)
        except DataApiError as exc:
            log.warning("data API: not ready yet: %s", exc)
        if watch and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="sluice-api-catalog", daemon=True)
            self._watcher.start()

    async def close_async(self) -> None:
        """Close the event-loop connections (call it on their loop, before :meth:`close`)."""
        pools, self.async_pools = self.async_pools, {}
        for pool in pools.values():
            if pool is not None:  # None: a database whose requests take the thread path
                await pool.close()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        for database in self.databases.values():
            database.close()

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL_S):
            try:
                self.refresh(force=False)
            except Exception as exc:  # the watcher must keep running; requests report database trouble
                log.warning("data API: catalog check failed: %s", exc)

    # The schema.

    def current_state(self) -> SchemaState | None:
        """The current schema, None if it was never read (never blocks)."""
        return self._state

    def state(self) -> SchemaState:
        """The current schema (read now if it never was)."""
        state = self._state
        return state if state is not None else self.refresh(force=True)

    def refresh(self, force: bool, since: float | None = None) -> SchemaState:
        """Compare the catalogs' fingerprints and rebuild when one changed. ``force``: check now even if the
        last check is recent; ``since``: skip when a check started after this time (a request's start)."""
        with self._refresh_lock:
            state = self._state
            started = time.monotonic()
            if state is not None:
                if since is not None and state.checked_at >= since:
                    return state
                if not force and started - state.checked_at < CHECK_INTERVAL_S:
                    return state
                prints = {name: db.fingerprint() for name, db in self.databases.items()}
                if prints == state.fingerprints:
                    state.checked_at = started
                    return state
            catalogs: dict[str, Catalog] = {name: db.read_catalog() for name, db in self.databases.items()}
            model = build_model(self.settings, catalogs)
            schema, roots = build_schema(model, sync_mutation_fields(self.settings))
            version = 1 if state is None else state.version + 1
            fresh = SchemaState(
                version=version,
                model=model,
                schema=schema,
                roots=roots,
                permissions=Permissions(self.settings, model),
                fingerprints={name: catalog.fingerprint for name, catalog in catalogs.items()},
                checked_at=started,
            )
            self._state = fresh
            self.plans.clear()  # their keys name the old version: never used again
            if state is not None:
                log.info("data API: the schema follows a catalog change (version %d, %d tables)", version, len(model.tables))
            return fresh

    # Documents.

    def cached(self, text: str, state: SchemaState) -> Parsed | None:
        """``text`` as :meth:`parsed` cached it for ``state``, or None (nothing is parsed here)."""
        with self._cache_lock:
            return self._cache.get((text, state.version))

    def parsed(self, text: str, state: SchemaState) -> Parsed:
        """``text`` parsed and validated against ``state`` (cached by text and schema version)."""
        key = (text, state.version)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        if len(text.encode()) > MAX_DOCUMENT_BYTES:
            raise DataApiError(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB", code="validation-failed")
        check_document(text)  # before graphql-core recurses through it
        try:
            document = parse(text, max_tokens=50_000)
        except GraphQLError as exc:
            result = Parsed(None, (exc,))
        except RecursionError:  # a last resort: check_document's bound should keep the parser off it
            raise too_deep("document") from None
        else:
            rules = [*specified_rules, *self.gate.graphql_rules()]
            try:
                result = Parsed(document, tuple(validate(state.schema, document, rules)))
            except RecursionError:
                raise too_deep("document") from None
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > DOCUMENT_CACHE_SIZE:
                self._cache.popitem(last=False)
        return result
