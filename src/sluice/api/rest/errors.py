"""REST errors: JSON bodies shaped like PostgREST's ``{"code", "message", "details", "hint"}``.

Codes are Sluice's own, numbered after PostgREST's groups (``SLR1xx`` request, ``SLR2xx`` schema cache,
``SLR5xx`` database): a client reading PostgREST's ``code`` field reads ours the same way. A message never
carries SQL text nor a driver's error: database failures are mapped by SQLSTATE class in :func:`database_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.api.databases import LOST_SQLSTATES
from sluice.api.gate import DataApiError

PARSE = "SLR100"  # a query parameter that does not parse (select, order, filter, limit)
BODY = "SLR102"  # a request body that is not JSON / CSV of the table's columns
RANGE = "SLR103"  # Range / offset past the end (416)
MEDIA = "SLR107"  # an Accept or Content-Type that is not served (406 / 415)
SINGULAR = "SLR116"  # a single object was asked and zero or several rows matched (406 / 404)
METHOD = "SLR117"  # a method the resource does not allow (405)
CONFLICT_TARGET = "SLR118"  # on_conflict names no unique key
EMBED = "SLR200"  # an embedded relation that no foreign key gives
AMBIGUOUS = "SLR201"  # several foreign keys give the embedded relation: add !hint
COLUMN = "SLR204"  # an unknown (or not readable) column
TABLE = "SLR205"  # an unknown table (404)
DENIED = "SLR403"  # the role has no such permission
UNIQUE = "SLR509"  # a unique / primary key / foreign key violation (409)
INVALID = "SLR522"  # a value refused by a constraint or its type (400)
TIMEOUT = "SLR504"  # the statement ran past the time-out (504)
UNAVAILABLE = "SLR503"  # the database cannot be reached (503)


class RestError(DataApiError):
    """A refused REST request: ``status``, ``code`` (above), a one-line ``message``, optional ``details`` and
    ``hint`` (PostgREST's error fields), and response ``headers``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = PARSE,
        details: str | None = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, headers=headers)
        self.details = details
        self.hint = hint


def error_body(error: DataApiError) -> dict[str, Any]:
    """The JSON body of ``error``: ``{"code", "message", "details", "hint"}`` (``details``/``hint`` may be null)."""
    return {
        "code": error.code,
        "message": str(error),
        "details": getattr(error, "details", None),
        "hint": getattr(error, "hint", None),
    }


# SQLSTATE -> (status, code, message). Classes 22 (data exception) and 23 (integrity) are the client's values.
_SQLSTATES: dict[str, tuple[int, str, str]] = {
    "23505": (409, UNIQUE, "a row with this key already exists"),
    "23503": (409, UNIQUE, "a foreign key refers to a row that does not exist, or a row is still referred to"),
    "23502": (400, INVALID, "a required column is null"),
    "23514": (400, INVALID, "a check constraint refused the row"),
    "23P01": (409, UNIQUE, "an exclusion constraint refused the row"),
    "57014": (504, TIMEOUT, "the request ran past its time-out"),
    "40001": (409, UNIQUE, "the transaction conflicted with another one; retry"),
    "40P01": (409, UNIQUE, "the transaction conflicted with another one; retry"),
    "42883": (400, INVALID, "an operator does not apply to this column's type"),
    "42804": (400, INVALID, "a value does not match the column's type"),
    "2201B": (400, INVALID, "the regular expression is invalid"),
    "22P05": (400, INVALID, "a text value holds a NUL character (\\u0000) or one the database cannot store"),
    "22003": (400, INVALID, "a number is out of range for its column's type"),
}

# MySQL / MariaDB error numbers -> SQLSTATE-like keys above.
_MYSQL: dict[int, str] = {
    1062: "23505",
    1586: "23505",
    1451: "23503",
    1452: "23503",
    1216: "23503",
    1217: "23503",
    1048: "23502",
    1364: "23502",
    3819: "23514",
    4025: "23514",
    1366: "22000",
    1292: "22000",
    1264: "22000",
    1265: "22000",
    1406: "22000",
    1367: "22000",
    3140: "22000",
    4038: "22000",
    1690: "22003",
    1411: "22000",
    1918: "22000",
    1139: "2201B",
    1969: "57014",
    3024: "57014",
    1205: "40001",
    1213: "40P01",
}


def database_error(sqlstate: str | None, *, detail: str | None = None, connection: str = "") -> RestError:
    """The client-facing error of a database failure with ``sqlstate`` (``None``: unknown).

    Data exceptions (class 22) and integrity violations (class 23) are the client's (4xx); connection
    failures (class 08, PostgreSQL's shutdowns :data:`~sluice.api.databases.LOST_SQLSTATES`) are 503 naming
    ``connection``; anything else is a 500 with a generic message (the driver's text is logged, not sent).
    ``detail``: a safe detail (e.g. the constraint name), or ``None``.
    """
    if sqlstate in _SQLSTATES:
        status, code, message = _SQLSTATES[sqlstate]
        return RestError(message, status=status, code=code, details=detail)
    if sqlstate and sqlstate.startswith("22"):
        return RestError("a value is not valid for its column's type", status=400, code=INVALID, details=detail)
    if sqlstate and sqlstate.startswith("23"):
        return RestError("a constraint refused the change", status=409, code=UNIQUE, details=detail)
    if sqlstate and (sqlstate.startswith("08") or sqlstate in LOST_SQLSTATES):
        return RestError(f"the database '{connection}' cannot be reached", status=503, code=UNAVAILABLE)
    return RestError("the database failed to answer the request", status=500, code="SLR500")


def mysql_sqlstate(errno: int) -> str | None:
    """The SQLSTATE key :func:`database_error` knows for a MySQL/MariaDB error number, or ``None``."""
    if errno in (2002, 2003, 2006, 2013):
        return "08000"
    return _MYSQL.get(errno)
