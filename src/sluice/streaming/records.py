"""Kafka records to Arrow: a list of messages becomes one record batch, and the records that cannot be decoded
are set apart with the reason, for the dead-letter topic.

>>> from sluice.streaming.records import Decoder, RecordSettings
>>> decoder = Decoder(RecordSettings(schema={"id": "int64", "amount": "float64"}, columns=["_offset"]))
>>> decoded = decoder.decode([Record(b'{"id": 1, "amount": 9.5}', offset_=7), Record(b"{oops", offset_=8)])
>>> decoded.batch.to_pylist(), [(r.index, r.reason[:14]) for r in decoded.rejected]
([{'id': 1, 'amount': 9.5, '_offset': 7}], [(1, 'not valid JSON')])

``messages`` are ``confluent_kafka.Message`` objects, or anything with the same methods (``value()``,
``key()``, ``partition()``, ``offset()``, ``timestamp()``, ``headers()``, ``topic()``): :class:`Record` is such a
stand-in, for tests and docs. Or they are already in columns (:class:`~sluice.streaming.columns.RecordColumns`:
the values joined into one buffer as they are consumed, which is what the micro-batch loop hands over).

**Fast path** (a batch where every value decodes): the values, joined with newlines, are parsed once by
``pyarrow.json.read_json`` (with the declared schema as its explicit schema, or the schema known from earlier
batches; a block per core, parsed by pyarrow's threads without the GIL), so there is no Python work per field
and none per record beyond collecting the values and metadata. Alignment of rows with messages is checked
without a Python loop: every value must start with ``{`` and end with ``}`` (checked on the joined buffer with
numpy) and the parse must give one row per message. Metadata columns come from the numpy arrays and lists of
the columns.

**Slow path** (a batch that fails): each value is checked alone (``msgspec.json.decode``: valid JSON, one
object); those that are not are rejected with the reason. The rest is parsed again; when it still fails (a
value that does not fit a declared type, or a column whose type changes), the batch is split in halves, and
halves again, down to the records that fail alone, which are rejected with a reason naming the column, its type
and the value (:class:`Misfit`; ``does not fit the schema: column 'ts' is declared date32 but the record has
"2024-05-01T12:00:00Z" (text)``). The cost is about log2(n) parses per bad record, paid only by batches that have
bad records.

**A declared schema that does not fit the data** would dead-letter every record while the stream looks healthy:
:meth:`Decoder.check_declared` raises a TerminalError when not one record of a batch of at least
:data:`MISFIT_GUARD_MIN` records decodes and most of them do not fit the declared schema, naming the column, its
declared type and a value seen.

**Inferred schemas stay stable across batches.** Without ``schema:``, the first batch's inferred schema is
remembered (:attr:`Decoder.schema`) and later batches are parsed against it: new fields are added as new
columns (earlier rows have them null), a column inferred as ``null`` takes the first type it sees, ``int64``
widens to ``double``; a value whose type cannot be widened into the known one (a string where numbers were)
is rejected. The order of columns is the order in which they were first seen, then the metadata columns.

Metadata columns (option ``columns:``), one convention for the batch source, streaming objects and the
Spark engine (Spark's Kafka source has the same fields): ``_key`` (string, UTF-8, invalid bytes replaced),
``_headers`` (list<struct<key: string, value: binary>>), ``_timestamp`` (timestamp[ms, tz=UTC], null when the
broker has none), ``_partition`` (int32), ``_offset`` (int64), ``_topic`` (string).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from sluice.errors import TerminalError
from sluice.streaming.columns import Record, RecordColumns
from sluice.streaming.options import RecordSettings

__all__ = [
    "METADATA_TYPES",
    "Decoded",
    "Decoder",
    "KafkaMessage",
    "Misfit",
    "Record",
    "RecordColumns",
    "RecordSettings",
    "Rejected",
]

METADATA_TYPES: dict[str, pa.DataType] = {
    "_key": pa.string(),
    "_headers": pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])),
    "_timestamp": pa.timestamp("ms", tz="UTC"),
    "_partition": pa.int32(),
    "_offset": pa.int64(),
    "_topic": pa.string(),
}
"""The Arrow type of each metadata column."""

MAX_REASON_CHARS = 1000
MISFIT_GUARD_MIN = 20
"""A batch of at least this many records, none of which decodes, most because a value does not fit the declared
schema, stops the object (:meth:`Decoder.check_declared`): the schema is wrong, not the records."""
_COLUMN = re.compile(r"Column\(/([^/)]*)")
_KINDS = {str: "text", bool: "a boolean", int: "an integer", float: "a number", dict: "an object", list: "an array"}
_OPEN, _CLOSE = ord("{"), ord("}")
_CORES = max(pa.cpu_count(), 1)


class KafkaMessage(Protocol):
    """What is read of a ``confluent_kafka.Message``."""

    def value(self) -> bytes | None: ...
    def key(self) -> bytes | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def topic(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Misfit:
    """A value that does not fit its column's type: the column, the type (declared, or learnt from earlier records),
    the value as JSON (cut at 80 characters) and what kind of JSON value it is."""

    column: str
    type: str
    value: str
    kind: str
    declared: bool

    def __str__(self) -> str:
        had = f"is declared {self.type}" if self.declared else f"had {self.type} in earlier records"
        return f"column {self.column!r} {had} but the record has {self.value} ({self.kind})"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that could not be decoded: its index in the list given to :meth:`Decoder.decode`, and why
    (``misfit``: the value that does not fit its column, when that is why)."""

    index: int
    reason: str
    misfit: Misfit | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """The result of one :meth:`Decoder.decode`: the batch (rows in message order, rejected ones left out) and
    the rejected records, in index order."""

    batch: pa.RecordBatch
    rejected: list[Rejected] = field(default_factory=list)


class Decoder:
    """Decodes lists of messages of one stream into record batches, keeping an inferred schema stable.

    ``known`` is the value schema learnt by an earlier decoder (saved with a streaming object's state), so a
    restart keeps the same columns; ``declared``, a declared schema already in Arrow types (``engine: spark``'s),
    instead of ``settings.schema``. Not thread-safe: one decoder per stream.
    """

    def __init__(self, settings: RecordSettings, known: pa.Schema | None = None, *, declared: pa.Schema | None = None) -> None:
        self.settings = settings
        self.declared = declared if declared is not None else settings.declared_schema()
        self._declared = self.declared is not None  # by the user: misfits say "declared", check_declared guards
        self._known: pa.Schema | None = self.declared if self.declared is not None else known
        self._metadata = [(name, METADATA_TYPES[name]) for name in settings.columns]

    @property
    def schema(self) -> pa.Schema:
        """The schema of the batches decoded so far: value columns (declared or inferred), then metadata columns.

        Before any record was decoded without a declared schema, only the metadata columns.
        """
        values = list(self._known) if self._known is not None else []
        return pa.schema(values + [pa.field(name, type_) for name, type_ in self._metadata])

    @property
    def value_schema(self) -> pa.Schema | None:
        """The value columns only (declared, or inferred so far); None before the first inferred batch."""
        return self._known

    def freeze(self) -> None:
        """Keep the schema as it is from now on, as if it had been declared: new fields are ignored and values that
        do not fit are rejected; columns still of type null become strings. For a reader whose schema is fixed
        once its first batch is out (the batch Kafka source); cast batches decoded before to :attr:`schema`."""
        if self.declared is None and self._known is not None:
            fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in self._known]
            self.declared = self._known = pa.schema(fields)

    def decode(self, messages: Sequence[KafkaMessage] | RecordColumns) -> Decoded:
        """One record batch for ``messages`` (any length, 0 included) with :attr:`schema` as it is afterwards.

        ``messages``: ``confluent_kafka.Message`` objects (or :class:`Record`), or their columns
        (:class:`~sluice.streaming.columns.RecordColumns`, what the micro-batch loop keeps). Never raises for bad
        records: they are returned in :attr:`Decoded.rejected`, their index that of ``messages``.
        """
        columns = messages if isinstance(messages, RecordColumns) else self.columns_of(messages)
        table = self._fast(columns)
        rejected: list[Rejected] = []
        kept: np.ndarray[Any, np.dtype[np.int64]] | None = None
        if table is None:
            table, rejected = self._slow(columns.values())
            if rejected:
                keep = np.ones(len(columns), dtype=bool)
                keep[[r.index for r in rejected]] = False
                kept = np.flatnonzero(keep)
        return Decoded(self._finish(table, columns, kept), rejected)

    def check_declared(self, decoded: Decoded, where: str) -> None:
        """Raise TerminalError (``where``: the object) when ``decoded`` has at least :data:`MISFIT_GUARD_MIN` records,
        not one decoded, and most rejected because a value does not fit the declared ``schema``: the declared type is
        wrong, and dead-lettering every record would lose them all. Names the column most of them fail on, its type
        and a value seen. Nothing when the schema is inferred."""
        total = decoded.batch.num_rows + len(decoded.rejected)
        if not self._declared or decoded.batch.num_rows or total < MISFIT_GUARD_MIN:
            return
        misfits = [r.misfit for r in decoded.rejected if r.misfit is not None and r.misfit.declared]
        if len(misfits) * 2 <= total:
            return
        column = Counter(m.column for m in misfits).most_common(1)[0][0]
        example = next(m for m in misfits if m.column == column)
        raise TerminalError(
            f"{where}: none of the {total:,} records of a micro-batch fits the declared schema: {example}; declare a "
            f"type that holds such values for {column!r} in the source's schema (or fix the producer) and start the "
            "object again: nothing of this micro-batch was committed or dead-lettered"
        )

    def columns_of(self, messages: Sequence[KafkaMessage]) -> RecordColumns:
        """The columns of ``messages`` this decoder needs: values and the metadata columns asked for."""
        return RecordColumns.of(messages, read=self.settings.columns)

    def _fast(self, columns: RecordColumns) -> pa.Table | None:
        if not len(columns):
            return self._empty()
        lengths = columns.lengths
        if not (lengths > 0).all():
            return None
        joined = columns.data
        raw = np.frombuffer(joined, dtype=np.uint8)
        if not ((raw[columns.starts] == _OPEN).all() and (raw[columns.starts + lengths - 1] == _CLOSE).all()):
            return None
        try:
            table = self._parse(joined, threads=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != len(columns):
            return None
        self._learn(table.schema)
        return table

    def _slow(self, values: list[bytes | None]) -> tuple[pa.Table, list[Rejected]]:
        rejected: list[Rejected] = []
        good: list[tuple[int, bytes]] = []
        for index, value in enumerate(values):
            reason = _not_an_object(value)
            if reason is None:
                good.append((index, value.strip()))  # type: ignore[union-attr]
            else:
                rejected.append(Rejected(index, reason))
        tables: list[pa.Table] = []
        if good and self.declared is None and self._known is not None:
            self._widen_from(b"\n".join(value for _, value in good))
        self._bisect(good, tables, rejected)
        rejected.sort(key=lambda r: r.index)
        if not tables:
            return self._empty(), rejected
        return pa.concat_tables([self._conform(t) for t in tables]), rejected

    def _bisect(self, part: list[tuple[int, bytes]], tables: list[pa.Table], rejected: list[Rejected]) -> None:
        """Parse ``part`` (values that are JSON objects each), or its halves, left to right, learning as it goes."""
        if not part:
            return
        try:
            table = self._parse(b"\n".join(value for _, value in part))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if len(part) == 1:
                misfit = self._misfit(part[0][1], exc)
                reason = _reason(exc) if misfit is None else f"does not fit the schema: {misfit}"[:MAX_REASON_CHARS]
                rejected.append(Rejected(part[0][0], reason, misfit))
                return
            half = len(part) // 2
            self._bisect(part[:half], tables, rejected)
            self._bisect(part[half:], tables, rejected)
            return
        self._learn(table.schema)
        tables.append(table)

    def _misfit(self, value: bytes, exc: Exception) -> Misfit | None:
        """Which column of the schema the JSON object ``value`` (that failed to parse with ``exc``) does not fit, or
        None when that cannot be told: the column pyarrow's message names, else the first whose value fails alone."""
        schema = self.declared if self.declared is not None else self._known
        if schema is None:
            return None
        record = msgspec.json.decode(value)
        if not isinstance(record, dict):
            return None
        named = _COLUMN.search(str(exc))
        if named is not None and named.group(1) in record and named.group(1) in schema.names:
            names = [named.group(1)]
        else:
            names = [f.name for f in schema if record.get(f.name) is not None and not _fits(schema.field(f.name), record)]
        if not names:
            return None
        found = record[names[0]]
        shown = msgspec.json.encode(found).decode()
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        kind = _KINDS.get(type(found), type(found).__name__)
        written = (self.settings.schema or {}).get(names[0])  # the type as the user wrote it (date32, not date32[day])
        type_ = written if written is not None else str(schema.field(names[0]).type)
        return Misfit(names[0], type_, shown, kind, self._declared)

    def _widen_from(self, data: bytes) -> None:
        """Learn the types ``data`` has on its own, when they widen the known schema (int64 to double, say)."""
        try:
            inferred = pa_json.read_json(io.BytesIO(data), read_options=_read_options(data)).schema
            self._known = _widened(self._known, inferred) if self._known is not None else inferred
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return

    def _parse(self, data: bytes, threads: bool = False) -> pa.Table:
        """Parse newline-separated JSON objects against the declared or known schema (raises ArrowInvalid).

        ``threads``: in blocks parsed by pyarrow's threads. Blocks end at line breaks; one inside a value (pretty-printed
        JSON) leaves an incomplete object on both sides, which fails the parse, and the caller's slow path (one block)
        decodes the batch."""
        read = _read_options(data, threads)
        if self.declared is not None:
            parse = pa_json.ParseOptions(explicit_schema=self.declared, unexpected_field_behavior="ignore")
        elif self._known is not None:
            # Columns still of type null take their type from the data (and so do new fields).
            typed = pa.schema([f for f in self._known if not pa.types.is_null(f.type)])
            parse = pa_json.ParseOptions(explicit_schema=typed, unexpected_field_behavior="infer")
        else:
            parse = pa_json.ParseOptions(unexpected_field_behavior="infer")
        table = pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=parse)
        if self._known is not None and self.declared is None:
            table = self._conform(table, learning=True)
        return table

    def _learn(self, schema: pa.Schema) -> None:
        if self.declared is None:
            self._known = schema if self._known is None else _widened(self._known, schema)

    def _conform(self, table: pa.Table, learning: bool = False) -> pa.Table:
        """``table`` with the known schema's columns, in its order (missing ones null); new columns kept at the end
        while ``learning``. Raises ArrowInvalid when a column cannot be cast (int64 values into a double column do)."""
        known = self._known
        if known is None:
            return table
        target = _widened(known, table.schema) if learning else known
        columns = []
        for f in target:
            if f.name in table.column_names:
                column = table.column(f.name)
                columns.append(column if column.type == f.type else column.cast(f.type))
            else:
                columns.append(pa.nulls(table.num_rows, f.type))
        return pa.Table.from_arrays(columns, schema=target)

    def _empty(self) -> pa.Table:
        return (self._known or pa.schema([])).empty_table()

    def _finish(
        self, table: pa.Table, columns: RecordColumns, kept: np.ndarray[Any, np.dtype[np.int64]] | None
    ) -> pa.RecordBatch:
        table = self._conform(table) if self.declared is None else table
        if self._metadata:
            names = table.column_names + [name for name, _ in self._metadata]
            extra = [_metadata_column(name, type_, columns) for name, type_ in self._metadata]
            if kept is not None:
                extra = [column.take(pa.array(kept)) for column in extra]
            table = pa.Table.from_arrays(table.columns + extra, names=names)
        return pa.RecordBatch.from_arrays([column.combine_chunks() for column in table.columns], schema=table.schema)


def _read_options(data: bytes, threads: bool = False) -> pa_json.ReadOptions:
    """One block for the whole of ``data``, parsed by one thread; with ``threads``, a block per core (256 KiB at
    least) parsed by pyarrow's thread pool."""
    if threads:
        return pa_json.ReadOptions(use_threads=True, block_size=max(len(data) // _CORES + 1, 1 << 18))
    return pa_json.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 16))


def _widened(known: pa.Schema, seen: pa.Schema) -> pa.Schema:
    """``known`` with ``seen``'s new fields appended, null columns typed and int64 widened to double when ``seen``
    has them so. Raises ArrowInvalid when a column's types cannot be merged."""
    try:
        merged = pa.unify_schemas([known, seen], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise pa.ArrowInvalid(str(exc)) from None
    for f in merged:
        old = known.field(f.name) if f.name in known.names else None
        if old is not None and not pa.types.is_null(old.type) and old.type != f.type and not _widens(old.type, f.type):
            raise pa.ArrowInvalid(f"column {f.name!r} changed from {old.type} to {f.type}")
    return merged


def _widens(old: pa.DataType, new: pa.DataType) -> bool:
    return bool((pa.types.is_integer(old) and pa.types.is_floating(new)) or pa.types.is_struct(old) or pa.types.is_list(old))


def _not_an_object(value: bytes | None) -> str | None:
    """Why ``value`` is not one JSON object, or None when it is."""
    if value is None:
        return "no value (a tombstone): a JSON object was expected"
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(decoded, dict):
        return f"not a JSON object: a {type(decoded).__name__} was found"
    return None


def _fits(field_: pa.Field, record: dict[str, Any]) -> bool:
    """True when ``record``'s value of ``field_`` parses as its type on its own."""
    data = msgspec.json.encode({field_.name: record[field_.name]})
    try:
        pa_json.read_json(io.BytesIO(data), parse_options=pa_json.ParseOptions(explicit_schema=pa.schema([field_])))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _reason(exc: Exception) -> str:
    text = str(exc).replace("JSON parse error: ", "").replace(" in row 0", "")
    return f"does not fit the schema: {text}"[:MAX_REASON_CHARS]


def _metadata_column(name: str, type_: pa.DataType, columns: RecordColumns) -> pa.Array:
    """One metadata column of ``columns`` (numpy arrays as they are; lists converted once)."""
    if name == "_topic":
        return pa.array(columns.topic_list(), type_)
    field_ = {"_offset": "offsets", "_partition": "partitions", "_timestamp": "timestamps", "_key": "keys"}.get(name, "headers")
    found = getattr(columns, field_)
    if found is None:
        raise ValueError(f"the records' columns were made without {name}: RecordColumns.of(read=...) must name it")
    if name in ("_offset", "_partition"):
        return pa.array(found, type_)
    if name == "_timestamp":
        return pa.array(found, pa.int64()).cast(type_)
    if name == "_key":
        try:
            return pa.array(found, pa.binary()).cast(type_)
        except pa.ArrowInvalid:
            return pa.array([None if k is None else k.decode("utf-8", "replace") for k in found], type_)
    headers: list[Any] = [None if h is None else [{"key": k, "value": v} for k, v in h] for h in found]
    return pa.array(headers, type_)
