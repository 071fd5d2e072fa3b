"""Custom GraphQL scalars that keep values exact (their output is produced by the database as JSON).

- ``BigInt``: a 64-bit integer; output as a JSON string; input an integer or a string of digits.
- ``Numeric``: an exact decimal; output as a JSON string (``"12.50"``); input a string, integer or float
  (a float is read through its shortest text, ``0.1`` -> ``Decimal("0.1")``).
- ``DateTime`` / ``Date`` / ``Time``: ISO 8601 text (``2024-05-01T12:00:00``, with an offset for time zones).
- ``JSON``: any JSON value.

Inputs are checked here, so a malformed value is a GraphQL validation error (400) before any SQL runs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLFloat,
    GraphQLInt,
    GraphQLScalarType,
    GraphQLString,
    ValueNode,
    value_from_ast_untyped,
)
from graphql.language import FloatValueNode, IntValueNode, StringValueNode


def _bigint(value: Any) -> int:
    if isinstance(value, bool):
        raise GraphQLError(f"BigInt cannot represent {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    else:
        raise GraphQLError(f"BigInt cannot represent {value!r}: give an integer or a string of digits")
    if not -(2**63) <= number < 2**64:
        raise GraphQLError(f"BigInt cannot represent {value!r}: out of range")
    return number


def _bigint_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, (IntValueNode, StringValueNode)):
        return _bigint(node.value)
    raise GraphQLError("BigInt takes an integer or a string of digits")


def _numeric(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise GraphQLError(f"Numeric cannot represent {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise GraphQLError(f"Numeric cannot represent {value!r}: give a decimal number as a string") from None
    if not number.is_finite() and not isinstance(value, str):
        raise GraphQLError(f"Numeric cannot represent {value!r}")
    return number


def _numeric_literal(node: ValueNode, _variables: Any = None) -> Decimal:
    if isinstance(node, (IntValueNode, FloatValueNode, StringValueNode)):
        return _numeric(node.value)
    raise GraphQLError("Numeric takes a number or a string")


def _iso(kind: str, parse: Any) -> tuple[Any, Any]:
    def value(raw: Any) -> Any:
        if not isinstance(raw, str):
            raise GraphQLError(f"{kind} takes ISO 8601 text, got {raw!r}")
        try:
            return parse(raw.strip())
        except ValueError:
            raise GraphQLError(f"{kind} cannot represent {raw!r}: use ISO 8601") from None

    def literal(node: ValueNode, _variables: Any = None) -> Any:
        if isinstance(node, StringValueNode):
            return value(node.value)
        raise GraphQLError(f"{kind} takes ISO 8601 text")

    return value, literal


def _same(value: Any) -> Any:
    return value


def _json_literal(node: ValueNode, variables: Any = None) -> Any:
    return value_from_ast_untyped(node, variables)


def _out(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, dict, list)) or value is None else str(value)


_dt_value, _dt_literal = _iso("DateTime", dt.datetime.fromisoformat)
_date_value, _date_literal = _iso("Date", dt.date.fromisoformat)
_time_value, _time_literal = _iso("Time", dt.time.fromisoformat)

BigInt = GraphQLScalarType(
    "BigInt",
    description="A 64-bit integer, written as a string in answers.",
    serialize=str,
    parse_value=_bigint,
    parse_literal=_bigint_literal,
)
Numeric = GraphQLScalarType(
    "Numeric",
    description="An exact decimal, written as a string in answers.",
    serialize=str,
    parse_value=_numeric,
    parse_literal=_numeric_literal,
)
DateTime = GraphQLScalarType(
    "DateTime", description="A date and time in ISO 8601.", serialize=_out, parse_value=_dt_value, parse_literal=_dt_literal
)
Date = GraphQLScalarType(
    "Date", description="A date in ISO 8601.", serialize=_out, parse_value=_date_value, parse_literal=_date_literal
)
Time = GraphQLScalarType(
    "Time", description="A time of day in ISO 8601.", serialize=_out, parse_value=_time_value, parse_literal=_time_literal
)
JSON = GraphQLScalarType(
    "JSON",
    description="Any JSON value.",
    serialize=_out,
    parse_value=_same,
    parse_literal=_json_literal,
)

SCALARS: dict[str, GraphQLScalarType] = {
    "Int": GraphQLInt,
    "Float": GraphQLFloat,
    "String": GraphQLString,
    "Boolean": GraphQLBoolean,
    "BigInt": BigInt,
    "Numeric": Numeric,
    "DateTime": DateTime,
    "Date": Date,
    "Time": Time,
    "JSON": JSON,
}
