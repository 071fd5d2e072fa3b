"""Column types across the SQL destinations: which conversions keep every value, which type holds two.

The destinations compare types as Arrow types: the data's (after the backend's own mapping, e.g.
uint64 -> decimal(20,0) for PostgreSQL) against the Arrow type an existing column holds. A conversion
is *lossless* when every value of the first type has an exact value in the second, judged by the types
alone (int32 -> int64, int64 -> decimal(19,0), decimal(10,2) -> decimal(18,6), float32 -> float64);
anything else would wrap, round or truncate some value and is refused unless the destination may widen
the column (:func:`widened`). Nested values (structs, lists, maps) become JSON text where a database
stores them as JSON (:func:`to_json`). docs/destinations.md describes the rules for users.

Example::

    lossless(pa.int32(), pa.int64())                   # True
    widened(pa.int64(), pa.float64())                  # float64: an integer column widened to hold 10.75
    convert(array, pa.decimal128(20, 0), "big", "t")   # uint64 values as numeric, or TerminalError naming 'big'
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import TerminalError

JSON = pa.json_(pa.string())
"""Nested values stored as JSON (PostgreSQL ``jsonb``): JSON text in an Arrow extension type."""

MAX_EXACT_FLOAT_INT = 2**53
"""Integers up to this magnitude have an exact double; a widened integer column is checked against it."""

_SIGNED_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}
_UNSIGNED_DIGITS = {8: 3, 16: 5, 32: 10, 64: 20}


def int_digits(kind: pa.DataType) -> int:
    """Decimal digits of the widest value of an integer type (int64: 19, uint64: 20)."""
    table = _UNSIGNED_DIGITS if pa.types.is_unsigned_integer(kind) else _SIGNED_DIGITS
    return table[kind.bit_width]


def is_nested(kind: pa.DataType) -> bool:
    """Structs, lists of any kind and maps: values stored as JSON where a database has no such type."""
    return bool(pa.types.is_nested(kind))


def _is_string(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _is_binary(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or pa.types.is_binary_view(kind)
    )


def same(a: pa.DataType, b: pa.DataType) -> bool:
    """True when values of ``a`` load into a column holding ``b`` unchanged (string flavours, time units aside)."""
    if a == b:
        return True
    if _is_string(a) and _is_string(b):
        return True
    if _is_binary(a) and _is_binary(b):
        return True
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return (a.tz is None) == (b.tz is None)
    if pa.types.is_date(a) and pa.types.is_date(b):
        return True
    return bool(pa.types.is_time(a) and pa.types.is_time(b))


def lossless(source: pa.DataType, target: pa.DataType) -> bool:
    """True when every value of type ``source`` has an exact value of type ``target``."""
    if same(source, target):
        return True
    if pa.types.is_integer(source):
        if pa.types.is_integer(target):
            if pa.types.is_signed_integer(source) and pa.types.is_unsigned_integer(target):
                return False
            if pa.types.is_unsigned_integer(source) and pa.types.is_signed_integer(target):
                return bool(source.bit_width < target.bit_width)
            return bool(source.bit_width <= target.bit_width)
        if pa.types.is_floating(target):
            return bool(source.bit_width <= {16: 8, 32: 16, 64: 32}[target.bit_width])
        if pa.types.is_decimal(target):
            return int_digits(source) <= int(target.precision - target.scale)
        return False
    if pa.types.is_floating(source) and pa.types.is_floating(target):
        return bool(source.bit_width <= target.bit_width)
    if pa.types.is_decimal(source) and pa.types.is_decimal(target):
        return bool(source.scale <= target.scale and source.precision - source.scale <= target.precision - target.scale)
    if is_nested(source) and (target == JSON or _is_string(target)):
        return True  # JSON text keeps every nested value
    return bool(target == JSON and source == JSON)


def checked_cast(source: pa.DataType, target: pa.DataType) -> bool:
    """True when values of type ``source``, not all representable in ``target``, are converted value by value, one
    that does not fit raising (``pc.cast(safe=True)`` in :func:`convert`): integers into a floating column (beyond
    2**53 for a double) or a decimal one (more digits than it holds). A daily file whose amounts happen to be whole
    numbers loads into the double column the earlier days made."""
    return bool(pa.types.is_integer(source) and (pa.types.is_floating(target) or pa.types.is_decimal(target)))


def _decimal(precision: int, scale: int) -> pa.DataType | None:
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    return None


def widened(held: pa.DataType, data: pa.DataType) -> pa.DataType | None:
    """The narrowest type holding every value of both ``held`` (a column's) and ``data``, or None.

    Integers widen to a wider integer (int64 and uint64 to decimal(20,0)); an integer and a float to
    float64 (the column's integers are checked to stay within 2**53 first); integers and decimals to a
    decimal with room for both. Other pairs (a string and a number, a date and a timestamp) have none.
    """
    if lossless(data, held):
        return held
    if lossless(held, data):
        return data
    if pa.types.is_integer(held) and pa.types.is_integer(data):
        for candidate in (pa.int16(), pa.int32(), pa.int64(), pa.decimal128(20, 0)):
            if lossless(held, candidate) and lossless(data, candidate):
                return candidate
        return None
    numbers = (held, data)
    if all(pa.types.is_integer(k) or pa.types.is_floating(k) for k in numbers):
        return pa.float64()
    if all(pa.types.is_integer(k) or pa.types.is_decimal(k) for k in numbers):
        scale = max(k.scale if pa.types.is_decimal(k) else 0 for k in numbers)
        whole = max(k.precision - k.scale if pa.types.is_decimal(k) else int_digits(k) for k in numbers)
        return _decimal(whole + scale, scale)
    return None


# -- conversion -------------------------------------------------------------------------------------------


class _NotJson(Exception):
    def __init__(self, value: object) -> None:
        super().__init__(type(value).__name__)
        self.value = value


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)  # exact; a JSON number would go through a float in most readers
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise _NotJson(value)


def to_json(array: pa.Array, column: str, table: str) -> pa.Array:
    """Nested values as JSON text (a string array, nulls kept); TerminalError naming the column if one cannot be."""
    try:
        values = array.to_pylist(maps_as_pydicts="lossy")
        text = [None if v is None else json.dumps(v, default=_json_default, allow_nan=False, ensure_ascii=False) for v in values]
    except _NotJson as exc:
        raise TerminalError(
            f"table '{table}' column '{column}' holds {type(exc.value).__name__} values inside nested values, which JSON "
            "cannot store; convert them in the object (e.g. bytes to hex or base64 strings)"
        ) from None
    except ValueError as exc:
        raise TerminalError(
            f"table '{table}' column '{column}' holds NaN or infinity inside nested values, which JSON cannot store "
            f"({exc}); replace them with null in the object"
        ) from None
    except TypeError as exc:
        raise TerminalError(
            f"table '{table}' column '{column}' has nested values JSON cannot store ({exc}); "
            "convert the column to a string in the object"
        ) from None
    return pa.array(text, pa.string())


def convert(array: pa.Array, target: pa.DataType, column: str, table: str, target_sql: str = "") -> pa.Array:
    """``array`` as ``target``, checking every value; TerminalError naming the column when one does not fit."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if is_nested(array.type) and (target == JSON or _is_string(target)):
        text = to_json(array, column, table)
        return pa.ExtensionArray.from_storage(JSON, text) if target == JSON else text.cast(target)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    try:
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        detail = " ".join(str(exc).split())
        raise TerminalError(
            f"table '{table}' column '{column}': a value of type {array.type} does not fit the column's type "
            f"{target_sql or target} ({detail}); nothing was written. Cast or fix the column in the object"
        ) from None


def converted(reader: pa.RecordBatchReader, target: pa.Schema, table: str, sql: dict[str, str]) -> pa.RecordBatchReader:
    """``reader`` with each column converted to ``target``'s type (columns already of that type untouched)."""
    changes = [i for i, (have, want) in enumerate(zip(reader.schema, target, strict=True)) if have.type != want.type]
    if not changes:
        return reader

    def batches() -> Any:
        for batch in reader:
            columns = list(batch.columns)
            for i in changes:
                name = target.field(i).name
                columns[i] = convert(columns[i], target.field(i).type, name, table, sql.get(name, ""))
            yield pa.RecordBatch.from_arrays(columns, schema=target)

    return pa.RecordBatchReader.from_batches(target, batches())
