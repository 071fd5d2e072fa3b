"""The built-in check types, as ``check`` plugins (docs/checks.md). A third party adds one the same way
(``sluice.plugins`` entry point): options a :class:`~sluice.checks.settings.CheckOptions`, target a callable
``(options, context) -> failing-rows SQL | Counted`` (:mod:`sluice.checks.builtin`)."""

from __future__ import annotations

from sluice.checks import settings as s
from sluice.plugins.base import Plugin

_TARGET = "sluice.checks.builtin:"

PLUGINS: list[Plugin] = [
    Plugin("check", "not_null", s.NotNullOptions, _TARGET + "not_null", "Rows where any of the columns is null fail."),
    Plugin("check", "unique", s.UniqueOptions, _TARGET + "unique", "A combination of the columns' values that repeats fails."),
    Plugin("check", "accepted_values", s.AcceptedValuesOptions, _TARGET + "accepted_values", "Values outside a list fail."),
    Plugin(
        "check", "relationships", s.RelationshipsOptions, _TARGET + "relationships", "Keys with no match in another object fail."
    ),
    Plugin("check", "row_count", s.RowCountOptions, _TARGET + "row_count", "The row count must be within bounds."),
    Plugin("check", "freshness", s.FreshnessOptions, _TARGET + "freshness", "The latest timestamp must be recent enough."),
    Plugin("check", "expression", s.ExpressionOptions, _TARGET + "expression", "Rows where a SQL condition is false fail."),
    Plugin("check", "sql", s.SqlOptions, _TARGET + "sql", "A query returning the failing rows."),
    Plugin("check", "python", s.PythonOptions, _TARGET + "python", "A project function given the output where it is."),
]
