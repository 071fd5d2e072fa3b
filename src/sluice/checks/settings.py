"""What a check is once declared: its type, name, severity, sample size and the type's typed options.

Each check type is a ``check`` plugin (``plugins.py``) whose options are one of the structures below (or a
third party's); :mod:`sluice.checks.read` checks a ``checks:`` item against it at its line.

>>> NotNullOptions(columns=["user_id"]).default_name()
'not_null_user_id'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

Severity = Literal["error", "warn"]
SEVERITIES: tuple[str, ...] = ("error", "warn")
Rows = Literal["load", "table"]
ROWS: tuple[str, ...] = ("load", "table")
"""What a check looks at (``rows:``): ``load``, the rows of the load being checked; ``table``, the whole output
(docs/checks.md#which-rows-a-check-looks-at). The default depends on the check's type: :func:`default_rows`."""
TABLE_KINDS: tuple[str, ...] = ("freshness", "row_count")
"""Check types that look at the whole output unless they say ``rows: load``: how fresh the output is and how many
rows it holds are questions about the output, which an append bringing no (or few) rows must not fail."""


def default_rows(kind: str) -> Rows:
    """What a check of type ``kind`` looks at when it gives no ``rows:``: ``table`` for ``freshness`` and
    ``row_count``, ``load`` for the others.

    >>> default_rows("freshness"), default_rows("unique")
    ('table', 'load')
    """
    return "table" if kind in TABLE_KINDS else "load"


COMMON_KEYS: tuple[str, ...] = ("name", "severity", "sample", "rows")
DEFAULT_SAMPLE = 5
_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 40) -> str:
    """``text`` as a lower-case identifier part: ``amount >= 0`` -> ``amount_0``."""
    return _SLUG.sub("_", text.lower()).strip("_")[:limit].rstrip("_") or "check"


class CheckOptions(Settings):
    """Base of a check type's options. ``shorthand``: the option a scalar value sets (``expression: "a > 0"``)."""

    shorthand: ClassVar[str | None] = None
    kind: ClassVar[str] = "check"

    def default_name(self) -> str:
        """The check's name when the declaration gives none (unique per object, or the declaration must name it)."""
        return self.kind


Columns = Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]


class NotNullOptions(CheckOptions):
    """``not_null: {columns: [user_id, email]}``: rows where any of the columns is null fail."""

    kind: ClassVar[str] = "not_null"
    columns: Annotated[Columns, Meta(description="Columns that must not be null.")]

    def default_name(self) -> str:
        return f"not_null_{'_'.join(self.columns)}"


class UniqueOptions(CheckOptions):
    """``unique: {columns: [transaction_id, tx_date]}``: each combination of the columns' values appears once."""

    kind: ClassVar[str] = "unique"
    columns: Annotated[Columns, Meta(description="Columns whose combination is unique (a single one: its non-null values).")]

    def default_name(self) -> str:
        return f"unique_{'_'.join(self.columns)}"


class AcceptedValuesOptions(CheckOptions):
    """``accepted_values: {column: status, values: [paid, refunded]}``: non-null values outside the list fail."""

    kind: ClassVar[str] = "accepted_values"
    column: Annotated[str, Meta(min_length=1, description="The column checked.")]
    values: Annotated[list[str | int | float | bool], Meta(min_length=1, description="The values it may hold.")]

    def default_name(self) -> str:
        return f"accepted_values_{self.column}"


class RelationshipsOptions(CheckOptions):
    """``relationships: {column: user_id, to: dim_users, field: user_id}``: non-null values with no match in ``to`` fail."""

    kind: ClassVar[str] = "relationships"
    column: Annotated[str, Meta(min_length=1, description="The column of this object's output (a foreign key).")]
    to: Annotated[int | str, Meta(description="The referenced object, by id or name.")]
    field: Annotated[str | None, Meta(description="The referenced column (default: the same name as column).")] = None

    def default_name(self) -> str:
        return f"relationships_{self.column}"


class RowCountOptions(CheckOptions):
    """``row_count: {min: 1, max: 1000000}``: the output's row count must be within the bounds (inclusive)."""

    kind: ClassVar[str] = "row_count"
    min: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="Fewest rows (inclusive).")] = None
    max: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="Most rows (inclusive).")] = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"row_count: min ({self.min}) is above max ({self.max})")


class FreshnessOptions(CheckOptions):
    """``freshness: {column: ts, max_age: 1h}``: the column's latest value must be at most ``max_age`` old (UTC)."""

    kind: ClassVar[str] = "freshness"
    column: Annotated[str, Meta(min_length=1, description="A timestamp or date column (naive timestamps are UTC).")]
    max_age: Annotated[str, Meta(pattern=r"^\d+(\.\d+)?(ms|s|m|h|d)$", description="Oldest accepted age: 90s, 15m, 1h, 2d.")]

    def default_name(self) -> str:
        return f"freshness_{self.column}"


class ExpressionOptions(CheckOptions):
    """``expression: "amount >= 0"``: rows where the expression is false fail (null is not false)."""

    shorthand: ClassVar[str | None] = "expression"
    kind: ClassVar[str] = "expression"
    expression: Annotated[str, Meta(min_length=1, description="A SQL condition on one row (DuckDB's dialect).")]

    def default_name(self) -> str:
        return f"expression_{slug(self.expression)}"


class SqlOptions(CheckOptions):
    """``sql: "select * from {{ this }} where ..."``: a query (DuckDB's dialect) returning the failing rows."""

    shorthand: ClassVar[str | None] = "sql"
    kind: ClassVar[str] = "sql"
    sql: Annotated[str, Meta(min_length=1, description="A SELECT returning failing rows; {{ this }} names the output.")]

    def default_name(self) -> str:
        return f"sql_{slug(self.sql)}"


class PythonOptions(CheckOptions):
    """``python: checks:no_gaps``: a function of the project given the output where it is (docs/checks.md)."""

    shorthand: ClassVar[str | None] = "function"
    kind: ClassVar[str] = "python"
    function: Annotated[str, Meta(pattern=r"^[\w.]+:\w+$", description="module:function in the project folder.")]

    def default_name(self) -> str:
        return f"python_{self.function.rpartition(':')[2]}"


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One declared check of an object.

    ``kind`` names its ``check`` plugin; ``options`` are that plugin's typed options; ``sample``: failing keys kept
    (0: none); ``rows``: ``load`` (only the rows of the load being checked) or ``table`` (the whole output), None
    (the default): :func:`default_rows` of ``kind``; ``line``: where it is declared (its file is the object's).
    """

    name: str
    kind: str
    options: CheckOptions
    severity: Severity = "error"
    sample: int = DEFAULT_SAMPLE
    line: int | None = None
    rows: Rows = None  # type: ignore[assignment]  # set from kind by __post_init__ when not given

    def __post_init__(self) -> None:
        if self.rows is None:
            object.__setattr__(self, "rows", default_rows(self.kind))

    def definition(self) -> dict[str, Any]:
        """A JSON-serialisable description (the API, ``sluice check --json``)."""
        options = msgspec.to_builtins(self.options)
        return {
            "name": self.name,
            "kind": self.kind,
            "severity": self.severity,
            "sample": self.sample,
            "rows": self.rows,
            "options": options,
        }
