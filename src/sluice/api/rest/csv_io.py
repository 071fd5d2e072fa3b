"""CSV in and out of the REST API (RFC 4180; ``Accept: text/csv``, ``Content-Type: text/csv``).

Out: a header line of the selected names, then one line per row; null is an empty field, ``true``/``false``
stay words, nested values (embedded relations, JSON columns) are written as JSON text. In: a header line
naming columns, then rows; an empty field is null (as Sluice's CSV sources read it), every other field is
text that the column's type converts (``42``, ``3.5``, ``true``, ``2024-05-01``).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sluice.api.rest.errors import BODY, RestError

MAX_FIELD = 10 * 1024 * 1024


class Number(str):
    """A JSON number kept as the text the database wrote (``30.00``, ``12345678901234567890.0123456789``):
    read as a float it would lose digits and scale."""


def read_json(data: bytes) -> Any:
    """The JSON text ``data`` with each non-integer number as a :class:`Number` (integers are exact ints)."""
    return json.loads(data, parse_float=Number)


def write_csv(rows: list[dict[str, Any]]) -> bytes:
    """``rows`` (JSON objects with the same keys) as CSV bytes; an empty list gives an empty body."""
    if not rows:
        return b""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    names = list(rows[0])
    writer.writerow(names)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in names])
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _json(value)
    return str(value)


def _json(value: Any) -> str:
    """``value`` (from :func:`read_json`) as compact JSON text, each :class:`Number` written as it was read."""
    if isinstance(value, Number):
        return str.__str__(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def read_csv(body: bytes) -> list[dict[str, Any]]:
    """The rows of a CSV body; raises :class:`RestError` 400 ``SLR102`` when it is not CSV with a header."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RestError("the CSV body is not UTF-8", status=400, code=BODY) from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        lines = [line for line in reader if line]
    except csv.Error as exc:
        raise RestError(f"the CSV body does not parse: {exc}", status=400, code=BODY) from None
    if not lines:
        raise RestError("the CSV body has no header line", status=400, code=BODY)
    header = [name.strip() for name in lines[0]]
    if len(set(header)) != len(header) or not all(header):
        raise RestError("the CSV header names a column twice or has an empty name", status=400, code=BODY)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            raise RestError(f"CSV line {number} has {len(line)} fields, the header {len(header)}", status=400, code=BODY)
        rows.append({name: (value if value != "" else None) for name, value in zip(header, line, strict=True)})
    return rows
