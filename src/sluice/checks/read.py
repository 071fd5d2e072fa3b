"""The ``checks:`` list of an object in sluice.yaml, each item checked against its type's typed options at its line.

An item names its type by its one key besides ``name``, ``severity``, ``sample`` and ``rows``; the value is the type's
options, or a string for the types that take one (``expression``, ``sql``, ``python``)::

    checks:
      - not_null: {columns: [user_id]}
      - unique: {columns: [transaction_id, tx_date]}
        severity: warn
      - expression: amount >= 0
        name: amount_not_negative
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import sqlglot
from sqlglot.errors import ParseError

from sluice.checks.settings import COMMON_KEYS, DEFAULT_SAMPLE, ROWS, SEVERITIES, CheckOptions, CheckSpec, default_rows
from sluice.errors import ConfigError, did_you_mean
from sluice.plugins.base import PluginError, Settings
from sluice.plugins.registry import registry
from sluice.project.yaml_tree import YamlMap, plain

S = TypeVar("S", bound=Settings)


class Checker(Protocol):
    """What the sluice.yaml reader lends: typed checks at a line."""

    file: str
    problems: list[ConfigError]

    def check(self, settings: type[S], raw: YamlMap, label: str, *, ignore: tuple[str, ...] = (), what: str = "key") -> S | None:
        """``raw`` as ``settings``, problems recorded."""


def read_checks(reader: Checker, raw: Any, label: str, line: int | None) -> tuple[CheckSpec, ...]:
    """The checks of ``raw`` (an object's ``checks:`` value); every problem goes to ``reader.problems``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        reader.problems.append(
            ConfigError(f"{label}: checks must be a list such as [{{not_null: {{columns: [id]}}}}]", reader.file, line)
        )
        return ()
    found: list[CheckSpec] = []
    names: dict[str, int | None] = {}
    for item in raw:
        spec = read_check(reader, item, label, line)
        if spec is None:
            continue
        if spec.name in names:
            reader.problems.append(
                ConfigError(
                    f"{label}: two checks are named {spec.name!r} (also at line {names[spec.name]}); give one a name: key",
                    reader.file,
                    spec.line,
                )
            )
            continue
        names[spec.name] = spec.line
        found.append(spec)
    return tuple(found)


def read_check(reader: Checker, item: Any, label: str, line: int | None) -> CheckSpec | None:
    """One ``checks:`` item, or None (its problems recorded)."""

    def problem(message: str, at: int | None) -> None:
        reader.problems.append(ConfigError(f"{label}: {message}", reader.file, at))

    if isinstance(item, Mapping) and not isinstance(item, YamlMap):  # a model's config(): plain values
        item = as_yaml(item, line)
    if not isinstance(item, YamlMap):
        problem(f"each check must be a mapping such as {{not_null: {{columns: [id]}}}}, got {plain(item)!r}", line)
        return None
    at = item.line
    kinds = [key for key in item if key not in COMMON_KEYS]
    known = registry().names("check")
    if len(kinds) != 1:
        problem(f"a check names one type ({', '.join(known)}); got {', '.join(map(str, kinds)) or 'none'}", at)
        return None
    kind = str(kinds[0])
    try:
        plugin = registry().get("check", kind)
    except PluginError:
        problem(f"unknown check type {kind!r}.{did_you_mean(kind, known)} Known: {', '.join(known)}", item.line_of(kind))
        return None
    options_type: type[CheckOptions] = plugin.options  # type: ignore[assignment]
    value = item[kind]
    if not isinstance(value, YamlMap):
        if options_type.shorthand is None or not isinstance(value, str):
            problem(f"check {kind} takes a mapping of options, got {plain(value)!r}", item.line_of(kind))
            return None
        mapping = YamlMap({options_type.shorthand: value})
        mapping.line, mapping.key_lines, mapping.duplicates = item.line_of(kind), {}, []
        value = mapping
    options = reader.check(options_type, value, f"{label}: check {kind}", what="option")
    name = item.get("name")
    severity = item.get("severity", "error")
    sample = item.get("sample", DEFAULT_SAMPLE)
    if name is not None and (not isinstance(name, str) or not name):
        problem(f"a check's name must be a non-empty string, got {plain(name)!r}", item.line_of("name"))
        return None
    if severity not in SEVERITIES:
        problem(f"a check's severity is error or warn, got {plain(severity)!r}", item.line_of("severity"))
        return None
    if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= 1000:
        problem(f"a check's sample is a number of failing keys kept, 0 to 1000, got {plain(sample)!r}", item.line_of("sample"))
        return None
    rows = item.get("rows", default_rows(kind))
    if rows not in ROWS:
        hint = did_you_mean(str(rows), ROWS) if isinstance(rows, str) else ""
        problem(
            f"a check's rows is load (the rows of this load) or table (the whole output), got {plain(rows)!r}.{hint}",
            item.line_of("rows"),
        )
        return None
    if options is None or not _sql_parses(options, problem, item.line_of(kind)):
        return None
    return CheckSpec(name or options.default_name(), kind, options, severity, sample, at, rows)


def as_yaml(value: Any, line: int | None) -> Any:
    """Plain mappings in ``value`` as :class:`YamlMap` at ``line`` (values of a model's configuration)."""
    if isinstance(value, Mapping):
        mapping = YamlMap({key: as_yaml(item, line) for key, item in value.items()})
        mapping.line, mapping.key_lines, mapping.duplicates = line, {}, []
        return mapping
    return [as_yaml(item, line) for item in value] if isinstance(value, list) else value


def _sql_parses(options: CheckOptions, problem: Any, at: int | None) -> bool:
    """Whether an ``expression`` / ``sql`` check's SQL parses (DuckDB's dialect); the problem recorded when not."""
    from sluice.checks.builtin import this_bound
    from sluice.checks.compile import parse_query
    from sluice.checks.settings import ExpressionOptions, SqlOptions
    from sluice.project.checks import syntax_error
    from sluice.scheduling.templating import has_template

    try:
        if isinstance(options, ExpressionOptions):
            sqlglot.parse_one(options.expression, read="duckdb")
        elif isinstance(options, SqlOptions):
            bound = this_bound(options.sql, "sluice_this")
            if has_template(bound):
                problem(f"check {options.kind}: {_template_problem(bound)}", at)
                return False
            parse_query(bound)
    except ParseError as exc:
        problem(f"check {options.kind}: {syntax_error(exc)}", at)
        return False
    except ConfigError as exc:
        problem(f"check {options.kind}: {exc}", at)
        return False
    except Exception as exc:  # TerminalError: not one query
        problem(f"check {options.kind}: {exc}", at)
        return False
    return True


def _template_problem(sql: str) -> str:
    """Why a check's SQL still holds a template once ``{{ this }}`` is replaced: Jinja's own error (an unknown
    variable, a bad tag) when it has one, and what a check's SQL takes."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    only = "a check's SQL takes only {{ this }} (the output's table); remove the other template"
    try:
        SandboxedEnvironment(undefined=jinja2.StrictUndefined).from_string(sql).render()
    except jinja2.TemplateSyntaxError as exc:
        return f"bad template (line {exc.lineno} of the SQL: {exc.message}); {only}"
    except jinja2.TemplateError as exc:
        return f"template error: {exc.message}; {only}"
    return f"{{{{ }}}} or {{% %}} other than {{{{ this }}}} is not rendered; {only}"
