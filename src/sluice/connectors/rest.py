"""REST source: JSON APIs over HTTP(S) as Arrow record batches (``source: {type: rest, ...}``, docs/sources.md).

A read walks the endpoint's pages (:mod:`~sluice.connectors.rest_pages`) through one client with retries and
a rate limit (:mod:`~sluice.connectors.rest_http`); each page's records become one Arrow table, built by
pyarrow from the list of dicts (``Table.from_pylist``), nested objects as structs and arrays as lists (what the
JSON file sources do; destinations store them as JSON, docs/destinations.md).

**Schema.** Inferred from the first page and grown by later ones while up to ``schema_buffer_bytes`` of
records are held: a new field becomes a nullable column (NULL in the earlier rows), a field that was always
null takes the type of its first value, an integer field that meets a decimal becomes ``double``, a struct
gains the new keys of its objects (pyarrow's permissive promotion). Any other change (a number, then text) is
a TerminalError naming the field, both types and the page, with the remedy (``column_types``). Once the
buffer is full the schema is fixed and streamed; from then on a new field or type fails the same way. An integer
outside the 64-bit range is a TerminalError naming the field (declare it ``string`` or a decimal).

**Incremental.** With ``incremental: {cursor: updated_at, param: updated_since}``, the last run's largest
``updated_at`` (kept in the state store) is sent as ``?updated_since=``; the largest value read is saved by
:meth:`RestSource.commit`, which the executor calls only once the object's output is durable. Values compare
as the API writes them: numbers, or ISO 8601 texts in one time zone. ``sluice state reset`` forgets it. A read that
started from a saved cursor :meth:`~RestSource.accumulates`: the object's lake output becomes the previous one plus
these records, merged on ``incremental.primary_key`` (or the destination's key) by :mod:`sluice.runtime.accumulate`.

**Freshness.** :meth:`RestSource.input_fingerprint` is None: an API cannot say whether it changed without
being read, so a REST object runs every time (incremental reads keep that cheap).

**Progress.** A read longer than a few seconds logs its pages, records and bytes received every 5 s and once at its
end (:mod:`~sluice.connectors.progress`).

**Parent/child.** With ``parent:``, each parent record fills the ``{placeholders}`` of ``path``
(``/customers/{id}/orders``) and the child records carry the parent fields named in ``parent.keys``, each as its
type in ``column_types`` when declared there.
"""

from __future__ import annotations

import base64
import datetime
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from sluice.connectors.base import Source
from sluice.connectors.batching import schema_overrides, stream
from sluice.connectors.json_lines import TEXT_TYPES, as_text, kinds
from sluice.connectors.progress import ReadProgress
from sluice.connectors.rest_http import HttpClient, credentials
from sluice.connectors.rest_options import RestOptions
from sluice.connectors.rest_pages import pages
from sluice.errors import TerminalError, did_you_mean

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
"""What pyarrow raises on values it cannot take (OverflowError: an integer outside the 64-bit range)."""
INT64 = range(-(2**63), 2**63)


class RestSource(Source[RestOptions]):
    """Reads a JSON API; see the module's docstring. :meth:`read` raises Transient/TerminalError (rest_http)."""

    pending: Any = None
    """The largest cursor value read so far (incremental)."""
    since: Any = None
    """The cursor value this read started from: saved by the last run, else ``incremental.initial``."""
    drained = False
    """True once every page was read."""
    schema: pa.Schema | None = None
    """The schema of the batches :meth:`read` returned."""
    saved_schema: pa.Schema | None = None
    """The schema saved with the cursor by the last run (incremental)."""
    progress: ReadProgress
    """Pages, records and bytes read so far, logged every few seconds of a long read (:mod:`.progress`)."""

    resumed = False
    """True once :meth:`read` started from the cursor saved by an earlier run (not from ``initial``)."""

    def accumulates(self) -> bool:
        """After :meth:`read`: True when it read only what changed since the saved cursor, so the object's lake output
        is the previous one plus these records (:mod:`sluice.runtime.accumulate`); a first read, or one after
        ``sluice state reset``, reads everything and replaces it."""
        return self.options.incremental is not None and self.resumed

    def incremental(self) -> bool:
        """True with ``incremental:``: a first read keeps the last record of each ``primary_key`` too."""
        return self.options.incremental is not None

    @property
    def accumulation_key(self) -> tuple[str, ...]:  # type: ignore[override]
        """``incremental.primary_key``: the fields that identify a record."""
        return self.options.incremental.primary_key if self.options.incremental is not None else ()

    def input_fingerprint(self) -> str | None:
        """None: always re-read (an API cannot tell whether it changed without being asked)."""
        return None

    def read(self) -> pa.RecordBatchReader:
        """The API's records as Arrow batches, one per page (child pages of a parent/child read included).

        The first ``schema_buffer_bytes`` of records are fetched before this returns (the schema may grow
        over them); the rest streams as the reader is consumed.
        """
        options = self.options
        where = self.context.label
        base, user, password = self.base()
        client = HttpClient(
            where,
            credentials(options.auth, user, password, where),
            options.retries,
            options.timeout_s,
            options.headers,
            options.rate_limit,
            base_url=base,
        )
        try:
            self.since = self.saved_cursor()
            self.progress = ReadProgress(where, "from the API")
            tables = self.counted(self.tables(client, base), client)
            schema, buffered, rest = self.settle(tables)
        except BaseException:
            client.close()
            raise

        def batches() -> Iterator[pa.RecordBatch]:
            for table in buffered:
                yield from table.to_batches()
            for table in rest:
                yield from self.conform(table, schema).to_batches()
            self.drained = True
            self.progress.done()

        self.schema = schema
        return stream(schema, batches(), on_close=client.close)

    def commit(self) -> None:
        """Save the largest cursor value read, once the whole response was read and the output is durable."""
        incremental = self.options.incremental
        if incremental is None or not self.drained or self.context.cursor is None:
            return
        if self.pending is not None and (self.since is None or self.pending != self.since):
            schema = base64.b64encode(self.schema.serialize().to_pybytes()).decode() if self.schema is not None else None
            self.context.cursor.save({"value": _jsonable(self.pending), "schema": schema})

    def base(self) -> tuple[str, str | None, str | None]:
        """The base URL and the connection URL's user and password (for auth), credentials cut from the URL."""
        options = self.options
        if options.connection is None:
            return options.base_url or "", None, None
        spec = self.context.connections.get(options.connection)
        if spec is None:
            known = ", ".join(sorted(self.context.connections)) or "none defined"
            hint = did_you_mean(options.connection, self.context.connections)
            raise TerminalError(f"{self.context.label}: unknown connection {options.connection!r}.{hint} Known: {known}")
        url = httpx.URL(spec.url)
        user = url.username or None  # httpx decodes them (%40 -> @)
        password = url.password or None
        return str(url.copy_with(username=None, password=None)), user, password

    def saved_cursor(self) -> Any:
        """The cursor value to send: the last run's (``{"value": v, "schema": base64 Arrow IPC}``), else ``initial``.

        The saved schema is what a run that finds nothing new reads as (so its empty output keeps the columns).
        """
        incremental = self.options.incremental
        if incremental is None:
            return None
        saved = self.context.cursor.load() if self.context.cursor is not None else None
        if not isinstance(saved, dict) or saved.get("value") is None:
            return incremental.initial
        if isinstance(saved.get("schema"), str):
            self.saved_schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(saved["schema"])))
        self.resumed = True
        return saved["value"]

    def tables(self, client: HttpClient, base: str) -> Iterator[pa.Table]:
        """One Arrow table per page of records (child pages, with the parent's keys, under a parent).

        A key column takes its type from ``column_types`` when declared there, else pyarrow's inference from the value.
        """
        options = self.options
        params: dict[str, Any] = dict(options.params)
        if options.incremental is not None and self.since is not None:
            params[options.incremental.param] = self.since
        parent = options.parent
        if parent is None:
            for records in pages(client, _join(base, options.path), params, options.paginate, options.records, options.max_pages):
                yield self.table(records, client.where)
            return
        parent_url = _join(base, parent.path)
        declared = schema_overrides(options.column_types, f"{client.where}: rest source")
        for parent_records in pages(client, parent_url, parent.params, parent.paginate, parent.records, options.max_pages):
            for record in parent_records:
                child = _join(base, _fill(options.path, record, client.where, parent.path))
                for records in pages(client, child, params, options.paginate, options.records, options.max_pages):
                    table = self.table(records, client.where)
                    for column, field in parent.keys.items():
                        value = _value(record, field, client.where, parent.path)
                        keys = _keys(value, table.num_rows, declared.get(column), column, client.where)
                        if column in table.column_names:
                            table = table.drop_columns([column])
                        table = table.append_column(column, keys)
                    yield table

    def counted(self, tables: Iterator[pa.Table], client: HttpClient) -> Iterator[pa.Table]:
        """``tables``, each counted by :attr:`progress` (a line every few seconds of a long read)."""
        for table in tables:
            self.progress.add(table.num_rows, client.received)
            yield table

    def table(self, records: list[dict[str, Any]], where: str) -> pa.Table:
        """One page's records as a table: declared types applied, pyarrow inferring the rest.

        A field declared as text keeps any JSON value as its text; one declared as a decimal is read through its
        text (so an integer past 64 bits fits). TerminalError names a field whose values pyarrow cannot take.
        """
        declared = schema_overrides(self.options.column_types, f"{where}: rest source")
        text = [name for name, type_ in declared.items() if type_ in TEXT_TYPES or pa.types.is_decimal(type_)]
        if text:
            for record in records:
                for name in text:
                    value = record.get(name)
                    if value is not None and not isinstance(value, str):
                        record[name] = as_text(value)
        try:
            table = pa.Table.from_pylist(records)
        except ARROW_ERRORS:
            raise _mixed(records, where) from None
        for name, type_ in declared.items():
            if name not in table.column_names:
                table = table.append_column(pa.field(name, type_), pa.nulls(table.num_rows, type_))
            elif table.schema.field(name).type != type_:
                try:
                    column = table.column(name).cast(type_)
                except ARROW_ERRORS as exc:
                    raise TerminalError(f"{where}: field {name!r} does not fit its declared type {type_}: {exc}") from None
                table = table.set_column(table.column_names.index(name), pa.field(name, type_), column)
        self.track_cursor(table, where)
        return table

    def track_cursor(self, table: pa.Table, where: str) -> None:
        incremental = self.options.incremental
        if incremental is None or table.num_rows == 0:
            return
        if incremental.cursor not in table.column_names:
            hint = did_you_mean(incremental.cursor, table.column_names)
            raise TerminalError(f"{where}: the records have no field {incremental.cursor!r} (incremental.cursor).{hint}")
        try:
            largest = pc.max(table.column(incremental.cursor)).as_py()
        except ARROW_ERRORS as exc:
            raise TerminalError(f"{where}: cannot compare the values of {incremental.cursor!r}: {exc}") from None
        if largest is not None and (self.pending is None or largest > self.pending):
            self.pending = largest

    def settle(self, tables: Iterator[pa.Table]) -> tuple[pa.Schema, list[pa.Table], Iterator[pa.Table]]:
        """Read tables until ``schema_buffer_bytes`` are held; the unified schema, the held tables cast to it, the rest."""
        held: list[pa.Table] = []
        size = 0
        schema: pa.Schema | None = None
        for table in tables:
            schema = table.schema if schema is None else self.unify(schema, table.schema)
            held.append(table)
            size += table.nbytes
            if size > self.options.schema_buffer_bytes:
                break
        if schema is None:
            if self.saved_schema is not None:
                return self.saved_schema, [], tables
            declared = schema_overrides(self.options.column_types, "rest source")
            return pa.schema(list(declared.items())), [], tables
        return schema, [self.conform(table, schema) for table in held], tables

    def unify(self, schema: pa.Schema, page: pa.Schema) -> pa.Schema:
        try:
            return pa.unify_schemas([schema, page], promote_options="permissive")
        except ARROW_ERRORS as exc:
            raise TerminalError(
                f"{self.context.label}: a field changes type between pages ({exc}); declare it in column_types "
                "(string keeps any JSON value as its text)"
            ) from None

    def conform(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        """``table`` with exactly ``schema``'s columns and types (missing ones NULL); TerminalError for a new field
        holding values or a type ``schema`` cannot take."""
        if table.schema == schema:
            return table
        empty = [f.name for f in table.schema if f.name not in schema.names and pa.types.is_null(f.type)]
        table = table.drop_columns(empty)  # a new field that is null throughout loses nothing by being left out
        if self.unify(schema, table.schema) != schema:
            new = [name for name in table.column_names if name not in schema.names]
            what = f"new fields {', '.join(new)}" if new else "a field whose type changed"
            raise TerminalError(
                f"{self.context.label}: a page has {what} after the schema was fixed (schema_buffer_bytes: "
                f"{self.options.schema_buffer_bytes}); declare them in column_types or raise schema_buffer_bytes"
            )
        return pa.concat_tables([schema.empty_table(), table], promote_options="permissive").select(schema.names)


def _jsonable(value: Any) -> Any:
    """A cursor value as JSON can keep it: dates and times (a column declared as a timestamp) as ISO 8601 text."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _join(base: str, path: str) -> str:
    if path.startswith(("http://", "https://")) or not base:
        return path
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


def _keys(value: Any, rows: int, type_: pa.DataType | None, column: str, where: str) -> pa.Array:
    """``rows`` copies of a parent key ``value`` for the key column ``column``, as its declared type when there is one
    (a text type takes any JSON value as its text, as :meth:`RestSource.table` does); TerminalError if it cannot be."""
    if type_ is None:
        try:
            return pa.array([value] * rows)
        except ARROW_ERRORS:
            raise TerminalError(
                f"{where}: the parent key {column!r} ({value!r}) cannot be a column; declare it with column_types: "
                f"{{{column}: string}}"
            ) from None
    if (type_ in TEXT_TYPES or pa.types.is_decimal(type_)) and value is not None and not isinstance(value, str):
        value = as_text(value)
    try:
        return pa.array([value] * rows).cast(type_)
    except ARROW_ERRORS as exc:
        raise TerminalError(f"{where}: parent key {column!r} ({value!r}) does not fit its declared type {type_}: {exc}") from None


def _value(record: dict[str, Any], field: str, where: str, path: str) -> Any:
    if field not in record:
        raise TerminalError(
            f"{where}: a record of the parent endpoint {path} has no field {field!r} (its fields: {', '.join(record)})"
        )
    return record[field]


def _fill(template: str, record: dict[str, Any], where: str, path: str) -> str:
    """``template`` with each ``{field}`` replaced by the record's value, percent-encoded as one path segment."""
    return _PLACEHOLDER.sub(lambda match: urllib.parse.quote(str(_value(record, match.group(1), where, path)), safe=""), template)


def _mixed(records: list[dict[str, Any]], where: str) -> TerminalError:
    """The first field whose values on one page mix JSON kinds or hold an integer past 64 bits, as an error with
    the remedy."""
    names = dict.fromkeys(name for record in records for name in record)
    for name in names:
        values = [record.get(name) for record in records]
        try:
            pa.array(values)
        except OverflowError:
            big = next((f" ({v})" for v in values if isinstance(v, int) and v not in INT64), "")
            return TerminalError(
                f"{where}: field {name!r} holds an integer outside the 64-bit range{big}; declare it with "
                f"column_types: {{{name}: string}} to keep its digits as text, or {{{name}: 'decimal128(38, 0)'}}"
            )
        except ARROW_ERRORS:
            seen = sorted(set(kinds([v for v in values if v is not None])))
            return TerminalError(
                f"{where}: field {name!r} holds {' and '.join(seen)} values on one page; "
                f"declare it with column_types: {{{name}: string}} to keep every value as text"
            )
    return TerminalError(f"{where}: a page's records cannot be read as a table")
