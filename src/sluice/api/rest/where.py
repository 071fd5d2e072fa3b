"""Boolean expressions (the GraphQL ``where`` format, Hasura's) compiled to a SQL condition with bind parameters.

Used for REST filters (parsed by :mod:`sluice.api.rest.query`) and for the ``api.roles`` row filters, whose
values may be ``{"claim": NAME}`` (the request's claim ``NAME``; a missing claim matches nothing). Values are
converted to the column's kind first, so ``?id=eq.abc`` on an integer column is a 400, not a database error.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Mapping
from typing import Any

from sluice.api.dialects import like_to_glob
from sluice.api.rest.errors import COLUMN, INVALID, RestError
from sluice.api.rest.model import Column, Table
from sluice.api.rest.sql import Dialect, Frag, join

COMPARE = {"_eq": "=", "_neq": "<>", "_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}
INT64 = 2**63
TRUE_WORDS = {"true": True, "t": True, "1": True, "yes": True, "false": False, "f": False, "0": False, "no": False}


def convert(value: Any, column: Column, dialect: Dialect) -> Any:
    """``value`` (a query-string string, or a JSON value) as a bind parameter for ``column``.

    Dates and times must be ISO 8601 (``2024-05-01``, ``2024-05-01T10:00:00+02:00``) on every database.
    Raises :class:`RestError` 400 ``SLR522`` when it cannot be one (``abc`` for an integer, a NUL character).
    """
    if value is None:
        return None
    kind = column.kind
    if isinstance(value, dict | list) and kind != "json":
        raise RestError(f"column {column.name!r} takes a {kind}, not a JSON object or array", status=400, code=INVALID)
    try:
        if kind == "integer":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float | decimal.Decimal):
                if not value.is_integer() if isinstance(value, float) else value != value.to_integral_value():
                    raise ValueError
                value = int(value)
            number = int(value) if isinstance(value, int) else int(str(value).strip())
            if not -INT64 <= number < INT64:
                raise ValueError
            return number
        if kind == "number":
            if isinstance(value, bool):
                raise ValueError
            exact = decimal.Decimal(str(value).strip())
            if dialect.name == "sqlite":
                return float(exact)
            return exact
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            return TRUE_WORDS[str(value).strip().lower()]
        if kind in ("date", "datetime", "time") and not isinstance(value, str):
            raise ValueError
        if kind == "date":
            dt.date.fromisoformat(value.strip())
        elif kind == "datetime":
            dt.datetime.fromisoformat(value.strip())
        elif kind == "time":
            dt.time.fromisoformat(value.strip())
    except (ValueError, KeyError, decimal.InvalidOperation, OverflowError):
        raise RestError(f"{value!r} is not a valid {kind} for column {column.name!r}", status=400, code=INVALID) from None
    if kind == "json" and not isinstance(value, str):
        import json

        return json.dumps(value, default=str)
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise RestError(f"a value for column {column.name!r} holds a NUL character", status=400, code=INVALID)
    return text


class Where:
    """Compiles expressions over one table alias.

    ``columns``: the columns a client may name (its role's readable ones; ``None``: all of the table's, as for
    row filters from configuration). ``claims``: the request's claims for ``{"claim": NAME}`` values.
    ``exists``: called for ``{relation: {...}}`` keys naming no column, returns an EXISTS condition or ``None``.
    """

    def __init__(
        self,
        table: Table,
        alias: str,
        dialect: Dialect,
        *,
        columns: Mapping[str, Column] | None = None,
        claims: Mapping[str, Any] | None = None,
        exists: Callable[[str, dict[str, Any]], Frag | None] | None = None,
    ) -> None:
        self.table = table
        self.alias = alias
        self.dialect = dialect
        self.columns = table.columns if columns is None else columns
        self.claims = claims or {}
        self.exists = exists

    def ref(self, name: str) -> str:
        """``alias."name"``."""
        return f"{self.alias}.{self.dialect.quote(name)}"

    def compile(self, expression: Mapping[str, Any]) -> Frag:
        """The condition of ``expression`` (``TRUE`` for ``{}``)."""
        parts = [self._one(key, value) for key, value in expression.items()]
        if not parts:
            return Frag("1=1")
        return parts[0] if len(parts) == 1 else Frag("(").add(join(parts, " AND ")).add(")")

    def _one(self, key: str, value: Any) -> Frag:
        if key in ("_and", "_or"):
            items = value if isinstance(value, list) else [value]
            parts = [self.compile(item) for item in items if isinstance(item, Mapping)]
            if not parts:
                return Frag("1=1" if key == "_and" else "1=0")
            return Frag("(").add(join(parts, " AND " if key == "_and" else " OR ")).add(")")
        if key == "_not":
            if not isinstance(value, Mapping):
                raise RestError("_not takes an expression", status=400)
            return Frag("NOT (").add(self.compile(value)).add(")")
        column = self.columns.get(key)
        if column is None:
            if self.exists is not None and isinstance(value, Mapping):
                found = self.exists(key, dict(value))
                if found is not None:
                    return found
            raise RestError(f"column {key!r} of {self.table.name!r} does not exist or is not readable", status=400, code=COLUMN)
        if not isinstance(value, Mapping):
            raise RestError(f"the condition on {key!r} is not an operator map", status=400)
        parts = [self._operator(column, op, arg) for op, arg in value.items()]
        return parts[0] if len(parts) == 1 else Frag("(").add(join(parts, " AND ")).add(")")

    def _value(self, value: Any) -> Any:
        if isinstance(value, Mapping) and set(value) == {"claim"}:
            return self.claims.get(str(value["claim"]))
        return value

    def _operator(self, column: Column, op: str, arg: Any) -> Frag:
        ref = self.ref(column.name)
        arg = self._value(arg)
        if op in COMPARE:
            if arg is None:
                return Frag("1=0")  # a missing claim (or null) matches nothing, as SQL's = NULL
            return Frag(f"{ref} {COMPARE[op]} %s", [convert(arg, column, self.dialect)])
        if op in ("_in", "_nin"):
            values = arg if isinstance(arg, list) else [arg]
            if not values:
                return Frag("1=0" if op == "_in" else "1=1")
            if len(values) > 1000:
                raise RestError("in takes at most 1000 values", status=400)
            marks = ", ".join("%s" for _ in values)
            params = [convert(self._value(v), column, self.dialect) for v in values]
            return Frag(f"{ref} {'IN' if op == '_in' else 'NOT IN'} ({marks})", params)
        if op in ("_like", "_ilike", "_nlike", "_nilike"):
            text = "" if arg is None else str(arg)
            insensitive = op in ("_ilike", "_nilike")
            pattern = text if self.dialect.name != "sqlite" or insensitive else like_to_glob(text)
            sql = self.dialect.like(ref, insensitive)
            return Frag(f"NOT ({sql})" if op.startswith("_n") else sql, [convert(pattern, _text(column), self.dialect)])
        if op in ("_regex", "_iregex"):
            return Frag(self.dialect.regex(ref, op == "_iregex"), [convert(str(arg), _text(column), self.dialect)])
        if op == "_is_null":
            return Frag(f"{ref} IS {'' if _truthy(arg) else 'NOT '}NULL")
        if op == "_is":
            if column.kind != "boolean" and self.dialect.name != "postgresql":
                return Frag(f"({ref} IS NOT NULL AND {'' if _truthy(arg) else 'NOT '}{ref})")
            return Frag(f"{ref} IS {'TRUE' if _truthy(arg) else 'FALSE'}")
        raise RestError(f"{op!r} is not an operator", status=400)


def _text(column: Column) -> Column:
    return Column(column.name, "text", "string")


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return TRUE_WORDS.get(value.lower(), True)
    return bool(value)
