"""JSON Lines in blocks of whole lines, each parsed by pyarrow; types fixed by the first block.

Declared ``string`` columns keep the JSON text of any value (``7`` -> ``"7"``, ``true`` -> ``"true"``);
declared dates and times (``date32``, ``date64``, ``time32``, ``time64``), which pyarrow's JSON reader
takes only as numbers, are read as text and parsed after (ISO 8601: ``"2026-01-05"``, ``"12:30:00.5"``;
:func:`from_text`); so are timestamps, declared or guessed, so that a UTC offset is never dropped: a guessed column
whose values all have one holds instants (``timestamp[s, tz=UTC]``), one whose values have none wall-clock times
(``timestamp[s]``), and one that mixes both is refused (:func:`stamps_from_text`, :func:`misdated`). Other declared
types are given to pyarrow (a ``double`` takes ints and floats). A
value that does not fit its column is reported with the file's line and the column (:func:`misfit`,
:func:`unparsed`), found by reading the failing block again in Python: only on that error path.

>>> kinds([7, 1.5, True, "x", None, [1], {"a": 1}])
['number', 'number', 'boolean', 'string', 'null', 'array', 'object']
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from sluice.errors import TerminalError

TEXT_TYPES = (pa.string(), pa.large_string())
_READ_AHEAD = 2
# the UTC offset ending an ISO 8601 date and time, as Arrow's parser takes it: Z, +hh, +hhmm or +hh:mm
_OFFSET = r"[T ][0-9:.,]*(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"


def kinds(values: list[Any]) -> list[str]:
    """The JSON kind of each value: null, boolean, number, string, array or object."""
    return [_kind(value) for value in values]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def as_text(value: Any) -> str | None:
    """A value of a declared ``string`` column: strings as they are, anything else as its JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fits(value: Any, type_: pa.DataType) -> bool:
    """Whether pyarrow's JSON reader takes ``value`` for a column of ``type_`` (a close, cheap check)."""
    if value is None or type_ in TEXT_TYPES:
        return True
    kind = _kind(value)
    if pa.types.is_integer(type_):
        return kind == "number" and isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        return kind == "number"
    if pa.types.is_boolean(type_):
        return kind == "boolean"
    if pa.types.is_struct(type_):
        return kind == "object"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return kind == "array"
    if pa.types.is_null(type_):
        return False
    return kind == "string"  # dates, timestamps, binary: written as text


def parsed_from_text(type_: pa.DataType) -> bool:
    """Whether a column of ``type_`` is read as text and parsed after (:func:`from_text`): the dates and times
    pyarrow's JSON reader takes only as numbers (days, milliseconds, time units since midnight), and timestamps,
    whose UTC offsets pyarrow's reader would apply to a column without a time zone."""
    return bool(pa.types.is_date(type_) or pa.types.is_time(type_) or pa.types.is_timestamp(type_))


def from_text(values: pa.ChunkedArray, type_: pa.DataType, *, declared: bool = True) -> pa.ChunkedArray:
    """ISO 8601 text (``"2026-01-05"``; a time ``"12:30:00"`` or ``"12:30:00.25"``; a timestamp, see
    :func:`stamps_from_text`) as ``type_``, a date, time or timestamp type; NULL stays NULL. Raises ArrowInvalid for
    a value that is not one (or a time finer than ``type_``'s unit)."""
    if pa.types.is_time(type_):  # pyarrow casts no text to a time: read it as a time of 1970-01-01
        stamps = pc.cast(pc.binary_join_element_wise("1970-01-01T", values, ""), pa.timestamp("ns"))
        return pc.cast(stamps, type_)
    if pa.types.is_timestamp(type_):
        return stamps_from_text(values, type_, declared=declared)
    return pc.cast(values, type_)


def stamps_from_text(values: pa.ChunkedArray, type_: pa.TimestampType, *, declared: bool) -> pa.ChunkedArray:
    """ISO 8601 date-and-time text as ``type_``. A value with a UTC offset (``Z``, ``+01:00``) is an instant, taken
    only by a column with a time zone (converted); one without an offset is a wall-clock time, taken by a column without
    a time zone, or by a ``declared`` one with a time zone as a time of that zone. Raises ArrowInvalid for any other
    value (Arrow's cast refuses an offset for a type without a zone, and a value without one for a type with one)."""
    if type_.tz is None or not declared:
        return pc.cast(values, type_)
    try:
        return pc.cast(values, type_)
    except pa.ArrowInvalid:  # some values have no offset: the declared zone says what they mean
        offset = pc.match_substring_regex(values, _OFFSET)
        instants = pc.cast(pc.if_else(offset, values, None), type_)
        naive = pc.cast(pc.if_else(offset, None, values), pa.timestamp(type_.unit))
        return pc.if_else(offset, instants, pc.assume_timezone(naive, type_.tz))


def guessed_stamps(values: pa.ChunkedArray, unit: str) -> pa.ChunkedArray:
    """Text of a column pyarrow guessed as timestamps: instants (``timestamp[unit, tz=UTC]``) when every value has a
    UTC offset, wall-clock times (``timestamp[unit]``) when none has; ArrowInvalid when they mix (:func:`misdated`)."""
    try:
        return pc.cast(values, pa.timestamp(unit, "UTC"))
    except pa.ArrowInvalid:
        return pc.cast(values, pa.timestamp(unit))


def misdated(
    where: str, lines: str, column: str, numbered: list[tuple[int, str]], type_: pa.DataType | None, *, declared: bool
) -> str:
    """Why the timestamps ``numbered`` (line, text) of ``column`` cannot be read as ``type_`` (None: guessed from
    them), or "": the first value whose UTC offset, or lack of one, does not fit the column or the first value."""
    unit = type_.unit if isinstance(type_, pa.TimestampType) else "s"
    offsets = [(line, text, offset) for line, text in numbered if (offset := _stamp_offset(text, unit)) is not None]
    if not offsets:
        return ""
    aware = f'"timestamp[{unit}, tz=UTC]"'
    for line, text, offset in offsets:
        shown = json.dumps(text, ensure_ascii=False)
        if type_ is None and offset != offsets[0][2]:
            first_line, first_text, _ = offsets[0]
            first_shown = json.dumps(first_text, ensure_ascii=False)
            return (
                f"{where}: cannot read lines {lines}: line {line}, column '{column}': {shown} "
                f"{'has a' if offset else 'has no'} UTC offset, but line {first_line}'s {first_shown} "
                f"{'has none' if offset else 'has one'}: instants and wall-clock times mixed in one column are ambiguous; "
                f"write every value with its offset (Z for UTC), or declare column_types: {{{column}: {aware}}} "
                "to read those without one as UTC"
            )
        if isinstance(type_, pa.TimestampType) and offset and type_.tz is None:
            return (
                f"{where}: cannot read lines {lines}: line {line}, column '{column}': {shown} has a UTC offset, but the "
                f"column holds wall-clock times ({type_}, without a time zone); declare column_types: {{{column}: {aware}}} "
                "to read its values as instants"
            )
        if isinstance(type_, pa.TimestampType) and not offset and type_.tz is not None and declared:
            return (  # it is a time, and the declared zone takes times without an offset: one a DST change skips or repeats
                f"{where}: cannot read lines {lines}: line {line}, column '{column}': {shown} is not one time in "
                f"{type_.tz} (a daylight-saving change skips or repeats it); write it with its UTC offset"
            )
        if isinstance(type_, pa.TimestampType) and not offset and type_.tz is not None:
            return (
                f"{where}: cannot read lines {lines}: line {line}, column '{column}': {shown} has no UTC offset, but the "
                f"column holds instants (its first values had one); write it with its offset (Z for UTC), or declare "
                f"column_types: {{{column}: {aware}}} to read values without one as UTC"
            )
    return ""


def _stamp_offset(text: str, unit: str) -> bool | None:
    """Whether ``text`` is a timestamp of ``unit`` with a UTC offset (True) or without (False); None when not one."""
    offset = re.search(_OFFSET, text) is not None
    try:
        pc.cast(pa.array([text]), pa.timestamp(unit, "UTC") if offset else pa.timestamp(unit))
    except pa.ArrowInvalid:
        return None
    return offset


def unparsed(
    where: str,
    first: int,
    block: bytes,
    column: str,
    values: pa.ChunkedArray,
    type_: pa.DataType | None,
    *,
    declared: bool = True,
) -> TerminalError:
    """The first value of ``column`` (text read from ``block``, whose first line is ``first``) that is not a
    ``type_`` value, with its line: one line, naming the file, the block's lines and the column. For timestamps not
    ``declared`` (``type_`` guessed from the first block, or None while guessing it), a UTC offset that does not fit
    is named first (:func:`misdated`)."""
    lines = [number for number, text in enumerate(block.splitlines(), start=first) if text.strip()]
    last = lines[-1] if lines else first
    texts = values.to_pylist()
    if type_ is None or (pa.types.is_timestamp(type_) and not declared):
        numbered = [(lines[index] if index < len(lines) else first, text) for index, text in enumerate(texts) if text]
        reason = misdated(where, f"{first}-{last}", column, numbered, type_, declared=declared)
        if reason:
            return TerminalError(reason)
    if type_ is None:
        return TerminalError(f"{where}: cannot read lines {first}-{last}: column '{column}' is not a timestamp")
    for index, value in enumerate(texts):
        if value is None:
            continue
        try:
            from_text(pa.chunked_array([[value]], values.type), type_, declared=declared)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            line = lines[index] if index < len(lines) else first
            reason = misdated(where, f"{first}-{last}", column, [(line, value)], type_, declared=declared)
            if reason:
                return TerminalError(reason)
            shown = json.dumps(value, ensure_ascii=False)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            example = '"12:30:00"' if pa.types.is_time(type_) else '"2026-01-05"'
            example = '"2026-01-05T12:30:00Z"' if pa.types.is_timestamp(type_) else example
            return TerminalError(
                f"{where}: cannot read lines {first}-{last}: line {line}, column '{column}': {shown} is not a {type_} "
                f"value (ISO 8601, like {example}); fix the value or "
                f"declare column_types: {{{column}: string}}"
            )
    return TerminalError(f"{where}: cannot read lines {first}-{last}: column '{column}' is not {type_}")


def misfit(where: str, line: int, column: str, value: Any, type_: pa.DataType | str) -> TerminalError:
    """A value that does not fit its column, naming the line, the column and the remedy."""
    text = json.dumps(value, ensure_ascii=False)
    shown = text if len(text) <= 40 else text[:37] + "..."
    holds = f"{type_} values" if isinstance(type_, pa.DataType) else f"{type_}s"
    if isinstance(type_, pa.DataType) and pa.types.is_integer(type_) and isinstance(value, float):
        fix = f"column_types: {{{column}: double}} to read every number as a decimal"
    else:
        fix = f"column_types: {{{column}: string}} to keep every value as text"
    return TerminalError(
        f"{where}: line {line}, column '{column}': {shown} is a JSON {_kind(value)}, but the column holds {holds} "
        f"(guessed from the first values, or declared); set {fix}"
    )


def line_blocks(path: Path, block_size: int) -> Iterator[tuple[int, bytes]]:
    """``(first line number, bytes)`` of blocks of whole lines, about ``block_size`` bytes each (BOM dropped)."""
    line = 1
    rest = b""
    with path.open("rb") as handle:
        first = True
        while chunk := handle.read(block_size):
            if first:
                chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield line, block
            line += block.count(b"\n")
    if rest.strip():
        yield line, rest


class BlockParser:
    """Parses the blocks of one file: the first decides the schema, later blocks must fit it."""

    def __init__(self, where: str, overrides: Mapping[str, pa.DataType], block_size: int) -> None:
        self.where = where
        self.text = [name for name, type_ in overrides.items() if type_ in TEXT_TYPES]
        self.typed = {name: type_ for name, type_ in overrides.items() if name not in self.text}
        self.guessing: dict[str, str] = {}  # timestamp columns pyarrow guessed in the first block, and their unit
        self.schema: pa.Schema | None = None

    def first(self, line: int, block: bytes) -> pa.Table:
        """Parse the first block and fix the schema from it (declared text columns as strings). A timestamp column
        pyarrow guessed is read again as text: whether its values have a UTC offset decides its type
        (:func:`guessed_stamps`)."""
        declared = pa.schema(list(self.typed.items()))
        table = self.parse(line, block, declared)
        self.guessing = {
            f.name: f.type.unit
            for f in table.schema
            if pa.types.is_timestamp(f.type) and f.name not in self.typed and f.name not in self.text
        }
        if self.guessing:  # in the order of the columns, which an explicit schema would change
            guessed = pa.schema([*declared, *(pa.field(name, pa.timestamp(unit)) for name, unit in self.guessing.items())])
            try:
                table = self.parse(line, block, guessed).select(table.column_names)
            finally:
                self.guessing = {}
        table = self.with_text_columns(table)
        self.schema = table.schema
        return table

    def later(self, line: int, block: bytes) -> pa.Table:
        """Parse a later block to exactly the first block's schema."""
        assert self.schema is not None
        schema = pa.schema([field for field in self.schema if field.name not in self.text])
        table = self.with_text_columns(self.parse(line, block, schema))
        if table.num_columns > len(self.schema):
            raise self.diagnose(line, block, schema, closed=True) or TerminalError(
                f"{self.where}: lines from {line} have keys the first block did not have: "
                f"{', '.join(sorted(set(table.column_names) - set(self.schema.names)))}"
            )
        return table.select(self.schema.names)

    def with_text_columns(self, table: pa.Table) -> pa.Table:
        """``table`` with every declared text column, NULL where the block had none."""
        for name in self.text:
            if name not in table.column_names:
                table = table.append_column(pa.field(name, pa.string()), pa.nulls(table.num_rows, pa.string()))
        return table

    def parse(self, line: int, block: bytes, explicit: pa.Schema) -> pa.Table:
        """``block`` (its first line ``line``) as a table of ``explicit``'s types for its columns; TerminalError (one
        line, naming the file, the lines and the column) for a value that does not fit."""
        reading = pa.schema([pa.field(f.name, pa.string()) if parsed_from_text(f.type) else f for f in explicit])
        options = pa_json.ParseOptions(explicit_schema=reading, unexpected_field_behavior="infer")
        try:
            table = pa_json.read_json(io.BytesIO(block), read_options=_whole(block), parse_options=options)
            table = self.texts(table)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            error = self.diagnose(line, block, explicit, closed=False)
            if error is None and self.text:
                table = self.parse_in_python(line, block, reading, options)
            else:
                last = line + block.count(b"\n") - block.endswith(b"\n")  # the block's own last line
                raise (error or TerminalError(f"{self.where}: cannot read lines {line}-{last}: {exc}")) from exc
        return self.parsed(line, block, table, explicit)

    def parsed(self, line: int, block: bytes, table: pa.Table, explicit: pa.Schema) -> pa.Table:
        """``table`` with the declared dates and times (read as text) parsed (:func:`from_text`)."""
        for field in explicit:
            if parsed_from_text(field.type) and field.name in table.column_names:
                values = table.column(field.name)
                declared = field.name in self.typed
                try:
                    if field.name in self.guessing:
                        typed = guessed_stamps(values, self.guessing[field.name])
                    else:
                        typed = from_text(values, field.type, declared=declared)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    type_ = None if field.name in self.guessing else field.type
                    raise unparsed(self.where, line, block, field.name, values, type_, declared=declared) from exc
                table = table.set_column(table.column_names.index(field.name), field.with_type(typed.type), typed)
        return table

    def texts(self, table: pa.Table) -> pa.Table:
        """Declared text columns cast to strings (``7`` -> ``"7"``); raises ArrowInvalid for arrays or objects."""
        for name in self.text:
            if name in table.column_names:
                index = table.column_names.index(name)
                table = table.set_column(index, pa.field(name, pa.string()), table.column(name).cast(pa.string()))
        return table

    def parse_in_python(self, line: int, block: bytes, explicit: pa.Schema, options: pa_json.ParseOptions) -> pa.Table:
        """A block whose text columns mix kinds (``7``, then ``"n/a"``): those values turned to text first."""
        rows = [json.loads(text) for text in block.splitlines() if text.strip()]
        for row in rows:
            for name in self.text:
                if name in row:
                    row[name] = as_text(row[name])
        data = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()
        schema = pa.schema([*explicit, *(pa.field(name, pa.string()) for name in self.text)])
        retyped = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior=options.unexpected_field_behavior)
        return pa_json.read_json(io.BytesIO(data), read_options=_whole(data), parse_options=retyped)

    def diagnose(self, line: int, block: bytes, explicit: pa.Schema, *, closed: bool) -> TerminalError | None:
        """The first line of ``block`` that is not JSON, or holds a value that does not fit its column."""
        first_kind: dict[str, tuple[str, Any]] = {}
        for number, text in enumerate(block.splitlines(), start=line):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                return TerminalError(f"{self.where}: line {number} is not valid JSON ({exc}); fix or remove that line")
            if not isinstance(row, dict):
                return TerminalError(f'{self.where}: line {number} is a JSON {_kind(row)}, not an object like {{"id": 1}}')
            for key, value in row.items():
                if key in self.text:
                    continue
                if key in explicit.names:
                    if not fits(value, explicit.field(key).type):
                        return misfit(self.where, number, key, value, explicit.field(key).type)
                elif closed:
                    return TerminalError(
                        f"{self.where}: line {number} has a key '{key}' that the first block of the file did not have; "
                        f"declare it with column_types: {{{key}: string}} (or a larger block_size)"
                    )
                elif value is not None:
                    seen = first_kind.setdefault(key, (_kind(value), value))[0]
                    if seen != _kind(value):
                        return misfit(self.where, number, key, value, seen)
        return None


def array_misfit(where: str, path: Path, rows: list[dict[str, Any]], types: Mapping[str, pa.DataType]) -> TerminalError | None:
    """The first value of a JSON array of objects that does not fit its column, with the file's line.

    A column's type is ``types[column]`` when declared, else the kind of its first value (ints and
    floats mix). Reads the file again to find the line: only on the error path.
    """
    seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        for key, value in row.items():
            declared = types.get(key)
            if declared is not None:
                if not fits(value, declared):
                    return misfit(where, element_line(path, index), key, value, declared)
            elif value is not None and seen.setdefault(key, _kind(value)) != _kind(value):
                return misfit(where, element_line(path, index), key, value, seen[key])
    return None


def element_line(path: Path, index: int) -> int:
    """The line on which element ``index`` of the JSON array in ``path`` starts."""
    text = path.read_bytes().decode("utf-8-sig")
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    for _ in range(index + 1):
        while text[position] in " \t\r\n,":
            position += 1
        start = position
        _, position = decoder.raw_decode(text, position)
    return text.count("\n", 0, start) + 1


def _whole(block: bytes) -> pa_json.ReadOptions:
    """Read options that parse ``block`` as one block (so a long line never straddles two)."""
    return pa_json.ReadOptions(block_size=len(block) + 1, use_threads=False)


def read_blocks(path: Path, where: str, overrides: Mapping[str, pa.DataType], block_size: int) -> pa.RecordBatchReader:
    """A reader over the JSON Lines file ``path``; blocks after the first are parsed two ahead in threads."""
    parser = BlockParser(where, overrides, block_size)
    blocks = line_blocks(path, block_size)
    first = next(blocks, None)
    if first is None:
        return pa.RecordBatchReader.from_batches(pa.schema([]), iter(()))
    table = parser.first(*first)
    assert parser.schema is not None

    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches()
        with ThreadPoolExecutor(max_workers=_READ_AHEAD, thread_name_prefix="sluice-jsonl") as pool:
            pending: list[Future[pa.Table]] = []
            for block in blocks:
                pending.append(pool.submit(parser.later, *block))
                if len(pending) > _READ_AHEAD:
                    yield from pending.pop(0).result().to_batches()
            for future in pending:
                yield from future.result().to_batches()

    return pa.RecordBatchReader.from_batches(parser.schema, batches())
