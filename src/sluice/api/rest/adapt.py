"""REST on the data API core: the catalog, databases and permissions of :class:`sluice.api.service.DataApi`.

- The catalog is apicore's model (:mod:`sluice.api.model`), converted once per schema version: a table goes by
  its exposed name (``base``), its foreign keys point at exposed names, its columns' kinds come from their
  GraphQL scalars. A catalog change (a migration) shows up at the next request, as in GraphQL.
- Statements run on apicore's pooled connections (:meth:`Database.connection` and :meth:`Database.transaction`),
  counted in ``Database.statements``; driver errors are mapped by :mod:`sluice.api.rest.errors` (409 for a
  unique or foreign key). A "no such table/column" answer makes the API re-read the catalog and the request
  run once more against the fresh one.
- Permissions are apicore's :class:`sluice.api.permissions.Permissions`, so a role may do the same over REST
  as over GraphQL; ``{claim: NAME}`` values are resolved by apicore's ``claim_value`` (403 ``claim-missing``
  when the request lacks the claim) before the REST compiler sees them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sluice.api.model import ExposedTable, Model
from sluice.api.permissions import claim_value
from sluice.api.principal import Principal
from sluice.api.rest.access import Access, Operation
from sluice.api.rest.backend import Runner, StaleRequest
from sluice.api.rest.errors import RestError
from sluice.api.rest.model import Catalog, Column, ForeignKey, Kind, Table
from sluice.api.rest.service import Backend, RestService
from sluice.api.service import DataApi

SCALAR_KIND: dict[str, Kind] = {
    "Int": "integer",
    "BigInt": "integer",
    "Float": "number",
    "Numeric": "number",
    "Boolean": "boolean",
    "String": "string",
    "DateTime": "datetime",
    "Date": "date",
    "Time": "time",
    "JSON": "json",
}


def _kind(column: Any) -> Kind:
    if column.array:
        return "json"
    if column.type == "uuid":
        return "uuid"
    if column.type == "bytea" or "blob" in column.type or "binary" in column.type:
        return "bytes"
    return SCALAR_KIND.get(column.scalar, "string")


def _table(exposed: ExposedTable, names: Mapping[tuple[str, tuple[str, str]], str], source: Any, connection: str) -> Table:
    columns = {c.name: Column(c.name, c.type, _kind(c), c.nullable, c.has_default or c.generated) for c in source.columns}
    fks = tuple(
        ForeignKey(fk.name, fk.columns, names[(connection, (fk.ref_schema, fk.ref_table))], fk.ref_columns)
        for fk in source.foreign_keys
        if (connection, (fk.ref_schema, fk.ref_table)) in names
    )
    return Table(
        name=exposed.base,
        sql_name=source.name,
        columns=columns,
        schema=source.schema,
        primary_key=source.primary_key,
        foreign_keys=fks,
        is_view=source.kind == "view",
        writable=exposed.writer is not None and exposed.read_only is None,
        connection=connection,
        write_connection=exposed.writer.connection if exposed.writer is not None else connection,
    )


def catalog_of(model: Model, version: int, dialects: Mapping[str, str]) -> Catalog:
    """The REST :class:`Catalog` of apicore's ``model`` (``dialects``: connection -> dialect name)."""
    names = {(t.connection, t.table.key): t.base for t in model.tables.values()}
    tables: dict[str, Table] = {}
    for exposed in model.tables.values():
        table = _table(exposed, names, exposed.table, exposed.connection)
        tables[exposed.base] = _with_dialect(table, dialects[exposed.connection])
    return Catalog(tables, version)


def _with_dialect(table: Table, dialect: str) -> Table:
    from dataclasses import replace

    schema = None if dialect == "sqlite" else table.schema
    return replace(table, dialect=dialect, schema=schema)  # type: ignore[arg-type]


def resolved(value: Any, principal: Principal) -> Any:
    """A permission expression with every ``{claim: NAME}`` replaced by the principal's claim."""
    if isinstance(value, dict):
        if set(value) == {"claim"}:
            return claim_value(principal, value)
        return {k: resolved(v, principal) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, principal) for v in value]
    return value


class DataApiRest:
    """The REST service of one :class:`DataApi` (same databases, catalog and permissions as GraphQL)."""

    def __init__(self, api: DataApi) -> None:
        self.api = api
        self._catalog: Catalog | None = None
        self._lock = threading.Lock()
        self.runners = {name: Runner(db, self.stale) for name, db in api.databases.items()}
        self.backend = Backend(api.settings, self.catalog, self.database, access=self.access, writer=self.writer)
        self.service = RestService(self.backend)
        self.settings = api.settings

    def stale(self) -> None:
        self.api.refresh(force=True)

    def catalog(self) -> Catalog:
        state = self.api.state()
        cached = self._catalog
        if cached is not None and cached.version == state.version:
            return cached
        with self._lock:
            dialects = {name: runner.dialect.name for name, runner in self.runners.items()}
            self._catalog = catalog_of(state.model, state.version, dialects)
            return self._catalog

    def database(self, table: Table, write: bool) -> Runner:
        return self.runners[table.write_connection if write else table.connection]

    def writer(self, table: Table) -> Table:
        exposed = self.api.state().model.tables.get(table.name)
        if exposed is None or exposed.writer is None or exposed.writer.connection == table.connection:
            return table
        names = {(t.connection, t.table.key): t.base for t in self.api.state().model.tables.values()}
        routed = _table(exposed, names, exposed.writer.table, exposed.writer.connection)
        routed = _with_dialect(routed, self.runners[exposed.writer.connection].dialect.name)
        from dataclasses import replace

        return replace(routed, connection=exposed.writer.connection, write_connection=exposed.writer.connection)

    def access(self, principal: Principal, table: Table, operation: Operation) -> Access:
        state = self.api.state()
        exposed = state.model.tables.get(table.name)
        if exposed is None:
            raise RestError(f"no table or view {table.name!r} is exposed", status=404, code="SLR205")
        granted = state.permissions.access(principal, exposed, operation)
        columns = (
            dict(table.columns) if granted.columns is None else {n: c for n, c in table.columns.items() if n in granted.columns}
        )
        return Access(
            columns,
            filter=resolved(granted.filter, principal),
            check=resolved(granted.check, principal),
            set=resolved(granted.preset, principal),
            limit=granted.limit,
        )

    def handle(self, *args: Any, **kwargs: Any) -> Any:
        """:meth:`RestService.handle`, run once more against a re-read catalog when the database had changed."""
        try:
            return self.service.handle(*args, **kwargs)
        except StaleRequest:
            try:
                return self.service.handle(*args, **kwargs)
            except StaleRequest:
                raise RestError("the table changed during the request; try again", status=503, code="SLR503") from None


def mount_data_api_rest(app: Any, api: DataApi) -> DataApiRest:
    """Mount REST (``api.rest_path``) for ``api`` on ``app``, behind ``api.gate``; each request is counted in
    the data API's metrics with ``api="rest"`` and ``operation="<METHOD> <table>"`` (:mod:`sluice.api.metrics`)."""
    from sluice.api import metrics
    from sluice.api.rest.routes import mount_rest

    rest = DataApiRest(api)

    def observed(operation: str, role: str, status: int, code: str | None, seconds: float) -> None:
        metrics.observe("rest", operation, role, status, code, seconds)

    mount_rest(app, rest, api.gate, on_request=observed)
    return rest
