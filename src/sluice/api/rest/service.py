"""One REST request, from its method, table, query string, headers and body to a :class:`Reply`.

Framework-free: :mod:`sluice.api.rest.routes` adapts it to Starlette. The catalog, the databases and the
permissions come in through :class:`Backend`; nothing here knows a driver.

Statements per request (what runs on the database):

- GET/HEAD: one statement (page, embedded relations and, for ``count=exact``, the total as a scalar subquery).
  ``count=planned`` adds the planner's estimate (PostgreSQL ``EXPLAIN``, MariaDB ``EXPLAIN``): a second
  statement; SQLite has no estimate and counts exactly. ``count=estimated`` is exact up to ``max_rows`` rows,
  the estimate above (PostgREST's rule).
- POST/PATCH/DELETE: one statement on PostgreSQL, two or three on SQLite and MariaDB (see :mod:`.write`), always
  in one transaction that is rolled back when a row fails the role's ``check``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sluice.api.principal import Principal
from sluice.api.rest import csv_io, write
from sluice.api.rest.access import Access, Operation, access
from sluice.api.rest.errors import BODY, MEDIA, RANGE, SINGULAR, TABLE, RestError
from sluice.api.rest.headers import CSV, JSON, OBJECT, Prefer, accepted, content_range, parse_prefer, parse_range
from sluice.api.rest.model import Catalog, Table
from sluice.api.rest.query import ReadRequest, parse_query
from sluice.api.rest.read import ReadCompiler
from sluice.api.rest.sql import Dialect, Frag
from sluice.api.rest.where import Where
from sluice.api.settings import ApiSettings


class Cursor(Protocol):
    def run(self, frag: Frag) -> list[tuple[Any, ...]]: ...


class Transaction(Protocol):
    def __enter__(self) -> Cursor: ...
    def __exit__(self, *exc: Any) -> bool | None: ...


class Runner(Protocol):
    """A database the REST layer can run statements on (:class:`sluice.api.rest.backend.Runner`)."""

    dialect: Dialect

    def transaction(self, *, single: bool = False) -> Transaction: ...


@dataclass(slots=True)
class Backend:
    """What the service needs: the ``api:`` settings, the current catalog, the database of a table
    (``write``: where its mutations go), the role's :class:`Access` (default: ``api.roles`` read by
    :func:`sluice.api.rest.access.access`) and the table mutations write (default: the table itself; another
    when ``api.mutations`` routes them to another connection)."""

    settings: ApiSettings
    catalog: Callable[[], Catalog]
    database: Callable[[Table, bool], Runner]
    access: Callable[[Principal, Table, Operation], Access] | None = None
    writer: Callable[[Table], Table] | None = None

    def allowed(self, principal: Principal, table: Table, operation: Operation) -> Access:
        """The role's access, or :class:`RestError` 403 (405 for a write on a read-only table)."""
        if self.access is not None:
            if operation != "select" and not table.writable:
                access(self.settings, principal, table, operation)  # raises the 405
            return self.access(principal, table, operation)
        return access(self.settings, principal, table, operation)

    def write_table(self, table: Table) -> Table:
        return self.writer(table) if self.writer is not None else table


@dataclass(slots=True)
class Reply:
    """An HTTP answer: ``status``, ``headers``, ``body`` bytes (its media type in ``headers``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_body(body: bytes, content_type: str | None) -> list[dict[str, Any]]:
    """The rows of a POST/PATCH body: JSON (an object or an array of objects) or CSV with a header line."""
    media = (content_type or JSON).split(";")[0].strip().lower()
    if media == CSV:
        return csv_io.read_csv(body)
    if media not in (JSON, "", "application/*+json") and not media.endswith("+json"):
        raise RestError(
            f"the body's Content-Type {media!r} is not served", status=415, code=MEDIA, hint="send application/json or text/csv"
        )
    try:
        data = json.loads(body or b"null", parse_float=Decimal)
    except (ValueError, RecursionError):
        raise RestError("the body is not valid JSON", status=400, code=BODY) from None
    rows = data if isinstance(data, list) else [data]
    if not all(isinstance(row, dict) for row in rows):
        raise RestError("the body must be a JSON object or an array of objects", status=400, code=BODY)
    return rows


class RestService:
    """Answers REST requests for one ``api:`` section."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def settings(self) -> ApiSettings:
        return self.backend.settings

    def table(self, name: str) -> Table:
        """The exposed table ``name``; 404 ``SLR205`` when there is none."""
        table = self.backend.catalog().tables.get(name)
        if table is None:
            raise RestError(f"no table or view {name!r} is exposed", status=404, code=TABLE)
        return table

    def handle(
        self,
        method: str,
        name: str,
        key: str | None,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        principal: Principal,
        prefer_values: Sequence[str] = (),
    ) -> Reply:
        """The :class:`Reply` of one request. ``headers``: lower-case names; ``key``: the ``/{table}/{id}``
        shorthand's id (``None`` otherwise). Raises :class:`RestError` for the client's mistakes."""
        table = self.table(name)
        request = parse_query(params)
        if key is not None:
            request.node(()).filters.append(self._key_filter(table, key))
        prefer = parse_prefer(list(prefer_values) or ([headers["prefer"]] if "prefer" in headers else []))
        if method in ("GET", "HEAD"):
            return self.read(table, request, headers, prefer, principal, single=key is not None, head=method == "HEAD")
        if method == "POST":
            if key is not None:
                raise RestError(
                    "POST goes to the table, not to one row",
                    status=405,
                    code="SLR117",
                    headers={"Allow": "GET, PATCH, PUT, DELETE"},
                )
            return self.insert(table, request, headers, body, prefer, principal)
        if method in ("PATCH", "PUT"):
            if method == "PUT" and key is None:
                raise RestError(
                    "PUT takes a row's key: /rest/{table}/{id}",
                    status=405,
                    code="SLR117",
                    headers={"Allow": "GET, HEAD, POST, PATCH, DELETE"},
                )
            return self.change(table, request, headers, body, prefer, principal, "update", single=key is not None)
        if method == "DELETE":
            return self.change(table, request, headers, b"", prefer, principal, "delete", single=key is not None)
        raise RestError(
            f"{method} is not served", status=405, code="SLR117", headers={"Allow": "GET, HEAD, POST, PATCH, PUT, DELETE"}
        )

    def _key_filter(self, table: Table, key: str) -> dict[str, Any]:
        if len(table.primary_key) != 1:
            raise RestError(
                f"{table.name!r} has no single-column primary key: use /{table.name}?col=eq.value",
                status=404,
                code=TABLE,
            )
        return {table.primary_key[0]: {"_eq": key}}

    def access_of(self, principal: Principal, operation: Operation) -> Callable[[Table], Access]:
        return lambda table: self.backend.allowed(principal, table, operation)

    # --- reads -----------------------------------------------------------------------------------------

    def page(self, table: Table, request: ReadRequest, headers: Mapping[str, str], select: Access) -> tuple[int, int | None]:
        """``(offset, limit)`` from ``offset``/``limit``, ``Range``, the role's limit and ``max_rows``."""
        node = request.nodes.get(())
        offset = node.offset if node and node.offset is not None else 0
        limit = node.limit if node else None
        ranged = parse_range(headers)
        if ranged is not None:
            first, length = ranged
            offset = max(offset, first) if node and node.offset is not None else first
            limit = length if limit is None else (min(limit, length) if length is not None else limit)
        caps = [c for c in (select.limit, self.settings.limits.graphql.max_rows) if c]
        for cap in caps:
            limit = cap if limit is None else min(limit, cap)
        return offset, limit

    def read(
        self,
        table: Table,
        request: ReadRequest,
        headers: Mapping[str, str],
        prefer: Prefer,
        principal: Principal,
        *,
        single: bool,
        head: bool,
    ) -> Reply:
        media = accepted(headers.get("accept"))
        if single:
            media = OBJECT if media == JSON else media
        db = self.backend.database(table, False)
        compiler = ReadCompiler(self.backend.catalog(), db.dialect, self.access_of(principal, "select"), principal.claims)
        select = compiler.access_of(table)
        offset, limit = self.page(table, request, headers, select)
        exact = prefer.count in ("exact", "estimated") or (prefer.count == "planned" and db.dialect.name == "sqlite")
        statement, _ = compiler.statement(table, request, limit=limit, offset=offset, count=exact)
        planned = prefer.count == "planned" or prefer.count == "estimated"  # a second statement: one snapshot
        with db.transaction(single=not planned) as cur:
            total, rows, body = cur.run(statement)[0]
            if prefer.count == "planned" and db.dialect.name != "sqlite":
                total = self.planned(cur, db.dialect, table, request, principal)
            elif prefer.count == "estimated" and total is not None and total > self.settings.limits.graphql.max_rows:
                total = self.planned(cur, db.dialect, table, request, principal) or total
        total = None if total is None else int(total)
        rows = int(rows)
        reply_headers = {"Content-Range": content_range(offset, rows, total), "Range-Unit": "items"}
        if prefer.count:
            reply_headers["Preference-Applied"] = f"count={prefer.count}"
        if total is not None and offset > 0 and offset >= total:
            reply_headers["Content-Range"] = f"*/{total}"
            raise RestError(
                "the requested range starts past the last row",
                status=416,
                code=RANGE,
                details=f"offset {offset}, {total} rows",
                headers=reply_headers,
            )
        status = 206 if total is not None and rows and (offset > 0 or offset + rows < total) else 200
        data = body.encode() if isinstance(body, str) else bytes(body)
        return self.shaped(data, media, status, reply_headers, rows, single, head)

    def shaped(self, data: bytes, media: str, status: int, headers: dict[str, str], rows: int, single: bool, head: bool) -> Reply:
        """The body in ``media``: the JSON array as the database wrote it, one object, or CSV."""
        if media == OBJECT:
            if rows != 1:
                if single:
                    raise RestError("no row has this key", status=404, code=SINGULAR)
                raise RestError(
                    "a single object was asked and the request matched " + str(rows) + " rows",
                    status=406,
                    code=SINGULAR,
                    details=f"{rows} rows",
                )
            data = data.strip()[1:-1].strip()  # the one row's object as the database wrote it: numbers stay exact
            headers["Content-Type"] = "application/json; charset=utf-8" if single else OBJECT + "; charset=utf-8"
        elif media == CSV:
            data = csv_io.write_csv(csv_io.read_json(data))
            headers["Content-Type"] = "text/csv; charset=utf-8"
        else:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return Reply(status, headers, b"" if head else data)

    def planned(self, cur: Cursor, dialect: Dialect, table: Table, request: ReadRequest, principal: Principal) -> int | None:
        """The planner's row estimate of the filtered table (a second statement)."""
        compiler = ReadCompiler(self.backend.catalog(), dialect, self.access_of(principal, "select"), principal.claims)
        select = compiler.access_of(table)
        alias = compiler.alias()
        where = compiler.where(table, select, alias, request, (), request.select)
        source = dialect.table(table.schema, table.sql_name)
        if dialect.name == "postgresql":
            rows = cur.run(Frag(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {source} {alias} WHERE ").add(where))
            plan = rows[0][0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            return int(plan[0]["Plan"]["Plan Rows"])
        rows = cur.run(Frag(f"EXPLAIN SELECT 1 FROM {source} {alias} WHERE ").add(where))
        return int(rows[0][8]) if rows and rows[0][8] is not None else None

    # --- writes ----------------------------------------------------------------------------------------

    def representation(self, prefer: Prefer, default: str) -> str:
        return prefer.ret or default

    def insert(
        self, table: Table, request: ReadRequest, headers: Mapping[str, str], body: bytes, prefer: Prefer, principal: Principal
    ) -> Reply:
        rows = parse_body(body, headers.get("content-type"))
        ret = self.representation(prefer, "minimal")
        media = accepted(headers.get("accept")) if ret == "representation" else JSON
        insert_access = self.backend.allowed(principal, table, "insert")
        update_access = self.backend.allowed(principal, table, "update") if prefer.resolution == "merge-duplicates" else None
        table = self.backend.write_table(table)
        db = self.backend.database(table, True)
        dml = write.insert(
            table,
            db.dialect,
            rows,
            insert_access,
            principal.claims,
            only=request.columns,
            missing_default=prefer.missing == "default",
            resolution=prefer.resolution,
            on_conflict=request.on_conflict,
            update_access=update_access,
        )
        count, data = self.run_change(db, table, request, principal, dml, insert_access.check, ret, "insert", None)
        reply_headers = {"Content-Range": f"*/{count}" if count == 0 else f"0-{count - 1}/*"}
        if prefer.ret or prefer.resolution or prefer.missing:
            reply_headers["Preference-Applied"] = Prefer(None, prefer.ret, prefer.resolution, prefer.missing).applied()
        if ret != "representation":
            return Reply(201, reply_headers)
        return self.shaped(data, media, 201, reply_headers, count, False, False)

    def change(
        self,
        table: Table,
        request: ReadRequest,
        headers: Mapping[str, str],
        body: bytes,
        prefer: Prefer,
        principal: Principal,
        operation: Operation,
        *,
        single: bool,
    ) -> Reply:
        ret = self.representation(prefer, "representation" if single and operation == "update" else "minimal")
        media = accepted(headers.get("accept")) if ret == "representation" else JSON
        if single and media == JSON:
            media = OBJECT
        rule = self.backend.allowed(principal, table, operation)
        table = self.backend.write_table(table)
        unused = [path for path in request.nodes if path]
        if unused:
            raise RestError(f"{'.'.join(unused[0])!r}: a {operation} filters the table's own columns only", status=400)
        db = self.backend.database(table, True)
        alias = "t0"
        where = Where(table, alias, db.dialect, claims=principal.claims).compile(rule.filter)
        if request.where:
            where = where.add(" AND ").add(Where(table, alias, db.dialect, claims=principal.claims).compile(request.where))
        if operation == "update":
            rows = parse_body(body, headers.get("content-type"))
            if len(rows) != 1:
                raise RestError("PATCH takes one object", status=400, code=BODY)
            dml = write.update(table, db.dialect, rows[0], rule, principal.claims, where, alias)
        else:
            dml = write.delete(table, db.dialect, where, alias)
        count, data = self.run_change(db, table, request, principal, dml, rule.check, ret, operation, where)
        if single and count == 0:
            raise RestError("no row has this key", status=404, code=SINGULAR)
        reply_headers = {"Content-Range": f"*/{count}" if count == 0 else f"0-{count - 1}/*"}
        if prefer.ret:
            reply_headers["Preference-Applied"] = f"return={prefer.ret}"
        if ret != "representation":
            return Reply(204, reply_headers)
        return self.shaped(data, media, 200, reply_headers, count, single, False)

    def run_change(
        self,
        db: Runner,
        table: Table,
        request: ReadRequest,
        principal: Principal,
        dml: Frag,
        check: Mapping[str, Any],
        ret: str,
        operation: Operation,
        where: Frag | None,
    ) -> tuple[int, bytes]:
        """Run the change and read its answer in one transaction; ``(changed rows, JSON body)``.
        Rolls back with 403 when a changed row fails ``check``."""
        dialect = db.dialect
        represent = ret == "representation"
        compiler = ReadCompiler(self.backend.catalog(), dialect, self.access_of(principal, "select"), principal.claims)
        if represent:
            select = compiler.access_of(table)
            items_select = request.select
        else:
            select = Access({k: table.columns[k] for k in table.primary_key})
            items_select = ()
        alias = compiler.alias()
        checker = Where(table, alias, dialect, claims=principal.claims)
        check_sql = checker.compile(check) if check and operation != "delete" else None
        q = dialect.quote
        with db.transaction() as cur:
            if dialect.writes_in_cte:
                statement = Frag("WITH m AS (").add(dml).add(" RETURNING *) ")
                failed = (
                    Frag("(SELECT count(*) FROM m " + alias + " WHERE NOT coalesce(").add(check_sql).add(", false))")
                    if check_sql
                    else Frag("0")
                )
                totals = failed.add(", (SELECT count(*) FROM m)")
                statement.add(
                    self._answer(
                        compiler, table, select, items_select, request, alias, "FROM m " + alias, Frag("1=1"), totals, represent
                    )
                )
                failed_n, changed, _, body = cur.run(statement)[0]
            else:
                source = dialect.table(table.schema, table.sql_name)
                pk = ", ".join(q(k) for k in table.primary_key)
                keys: list[tuple[Any, ...]]
                body = "[]"
                if operation == "delete" or (operation == "update" and not dialect.returning_update):
                    assert where is not None
                    lock = " FOR UPDATE" if dialect.name == "mysql" else ""
                    keys = [
                        tuple(r)
                        for r in cur.run(
                            Frag(f"SELECT {', '.join(f'{alias}.{q(k)}' for k in table.primary_key)} FROM {source} {alias} WHERE ")
                            .add(Frag(where.text, list(where.params)))
                            .add(lock)
                        )
                    ]
                    if operation == "delete" and represent and keys:
                        body = self._read_keys(cur, compiler, table, select, items_select, request, alias, keys, None, True)[1]
                    # MariaDB's UPDATE: the keys stay those selected (a change of the key itself is not followed).
                    cur.run(
                        dml
                        if operation == "update"
                        else write.delete(table, dialect, write.keys_in(table, dialect, alias, keys), alias)
                    )
                else:
                    keys = [tuple(r) for r in cur.run(Frag(dml.text, list(dml.params)).add(f" RETURNING {pk}"))]
                failed_n = 0
                changed = len(keys)
                if operation != "delete" and (represent or check_sql is not None) and keys:
                    failed_n, body = self._read_keys(
                        cur, compiler, table, select, items_select, request, alias, keys, check_sql, represent
                    )
            if failed_n:
                raise RestError(
                    f"a row does not pass the role's check for {operation} on {table.name!r}", status=403, code="SLR403"
                )
        data = body.encode() if isinstance(body, str) else bytes(body or b"[]")
        return int(changed), data

    def _answer(
        self,
        compiler: ReadCompiler,
        table: Table,
        select: Access,
        items_select: tuple[Any, ...],
        request: ReadRequest,
        alias: str,
        source: str,
        condition: Frag,
        totals: Frag,
        represent: bool,
    ) -> Frag:
        """``SELECT totals, count, body FROM source WHERE condition AND <the role's select filter>``."""
        items = compiler.items(table, select, alias, items_select, request, ()) if represent else [("_", Frag("1"))]
        row_filter = (
            Where(table, alias, compiler.dialect, claims=compiler.claims).compile(select.filter) if represent else Frag("1=1")
        )
        rest = Frag(source + " WHERE ").add(condition).add(" AND ").add(row_filter)
        return compiler.dialect.top(items, rest, totals)

    def _read_keys(
        self,
        cur: Cursor,
        compiler: ReadCompiler,
        table: Table,
        select: Access,
        items_select: tuple[Any, ...],
        request: ReadRequest,
        alias: str,
        keys: list[tuple[Any, ...]],
        check_sql: Frag | None,
        represent: bool,
    ) -> tuple[int, Any]:
        dialect = compiler.dialect
        source = dialect.table(table.schema, table.sql_name)
        failed = Frag("0")
        if check_sql is not None:
            failed = Frag(f"(SELECT count(*) FROM {source} {alias} WHERE ").add(write.keys_in(table, dialect, alias, keys))
            failed.add(" AND NOT coalesce(").add(Frag(check_sql.text, list(check_sql.params))).add(", 0))")
        condition = write.keys_in(table, dialect, alias, keys)
        statement = self._answer(
            compiler, table, select, items_select, request, alias, f"FROM {source} {alias}", condition, failed, represent
        )
        failed_n, _, body = cur.run(statement)[0]
        return int(failed_n or 0), body
