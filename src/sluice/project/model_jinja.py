"""Render a model file's template with Jinja2 (dbt's own template engine), keeping every line where it was.

A model file is SQL with, optionally, the Jinja of existing dbt model files (dbt's context,
https://docs.getdbt.com/reference/dbt-jinja-functions). The context Sluice gives:

- ``ref('m')`` (or ``ref('package', 'm')``, the package ignored): the model or object ``m``, rendered as its name;
- ``source('s', 't')``: a declared source's table or an object, rendered as ``s.t``;
- ``this``: the model's own table (its previous output), rendered as :data:`THIS`;
- ``config(materialized='incremental', unique_key='id')``: the model's configuration (keyword arguments);
- ``is_incremental()``: false in the full rendering, true in the incremental one;
- ``var('name')`` / ``var('name', default)``: ``models.vars`` of sluice.yaml;
- ``env_var('NAME')`` / ``env_var('NAME', default)``: the environment of the process loading the project;
- Jinja's own statements (``{% if %}``, ``{% for %}``, ``{% set %}``, filters, ``{# comments #}``).

Macros are not supported: ``{% macro %}``, ``{% call %}``, ``{% import %}``, ``{% from %}``, ``{% include %}``,
``{% extends %}`` and ``{% block %}`` are refused at their line, as is any name outside the context
(``{{ target }}``); a name outside it given to one of these functions, most often a string without its quotes
(``config(schema=analytics)``), is refused at its line saying how to quote it.
Jinja runs sandboxed (:class:`jinja2.sandbox.SandboxedEnvironment`).

**Lines.** Jinja drops the text of a branch not taken and the newlines inside a tag, so before rendering
each newline outside a tag gets a marker naming its line, and the output is padded back so that what
came from line *n* of the file is on line *n* of the rendered SQL: sqlglot's line numbers point into
the file. Errors are :class:`~sluice.errors.ConfigError` at the file's line.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from sluice.errors import ConfigError, did_you_mean

THIS = "_sluice_this"
"""What ``{{ this }}`` renders as: a table name the engine binds to the model's own previous output."""

_TEMPLATE = "<template>"
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_MARK = re.compile("\x1e(\\d+)\x1f")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFUSED = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.Include: "include",
    nodes.Extends: "extends",
    nodes.Block: "block",
}
_CONTEXT = "ref(), source(), this, config(), is_incremental(), var() and env_var()"
_ENVIRONMENT = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _name(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _marked(text: str) -> str:
    """``text`` with ``\\x1e<line>\\x1f`` before each newline outside a tag (a tag's own newlines are kept)."""
    out: list[str] = []
    position, line = 0, 1
    for match in _TAG.finditer(text):
        plain = text[position : match.start()]
        for part in plain.split("\n")[:-1]:
            out.append(f"{part}\x1e{line}\x1f\n")
            line += 1
        out.append(plain.rsplit("\n", 1)[-1])
        out.append(match.group(0))
        line += match.group(0).count("\n")
        position = match.end()
    for part in text[position:].split("\n")[:-1]:
        out.append(f"{part}\x1e{line}\x1f\n")
        line += 1
    out.append(text[position:].rsplit("\n", 1)[-1])
    return "".join(out)


def _unmarked(rendered: str) -> str:
    """The rendered text with its markers removed and lines padded so line *n* of the file is line *n*."""
    out: list[str] = []
    line, position = 1, 0
    for match in _MARK.finditer(rendered):
        piece = rendered[position : match.start()]
        out.append(piece)
        line += piece.count("\n")
        target = int(match.group(1)) + 1
        out.append("\n" * max(1, target - line))
        line = max(line + 1, target)
        position = match.end() + (1 if rendered[match.end() : match.end() + 1] == "\n" else 0)
    out.append(rendered[position:])
    return "".join(out)


def _template_line(template: jinja2.Template) -> int | None:
    """The line of the file the template is executing (from the calling frames)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == _TEMPLATE:
            return template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _error_line(exc: BaseException) -> int | None:
    """The file's line of an error raised while rendering (Jinja rewrites its traceback to the template's lines)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _undefined(value: Any) -> jinja2.Undefined | None:
    """The first undefined name in ``value`` (a call's argument, looked into lists, tuples and mappings), or None."""
    if isinstance(value, jinja2.Undefined):
        return value
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else ()
    return next((found for item in items if (found := _undefined(item)) is not None), None)


def _bare(value: jinja2.Undefined) -> bool:
    """Whether ``value`` is a bare name the template does not know (``analytics``), not a missing attribute or key."""
    return value._undefined_name is not None and value._undefined_obj is jinja2.utils.missing


def _quoted(value: Any) -> Any:
    """``value`` with each bare undefined name as the string it was probably meant to be."""
    if isinstance(value, jinja2.Undefined):
        return value._undefined_name if _bare(value) else value
    if isinstance(value, Mapping):
        return {key: _quoted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_quoted(item) for item in value)
    return value


def _written(value: Any) -> str:
    """An argument as the template wrote it: an undefined name bare, anything else as its repr."""
    if isinstance(value, jinja2.Undefined):
        return str(value._undefined_name) if _bare(value) else "..."
    return repr(value)


class _Context:
    """The functions one rendering gives the template; records ``config()`` and whether ``is_incremental()`` was asked."""

    def __init__(self, template: jinja2.Template, file: str, variables: Mapping[str, Any], incremental: bool) -> None:
        self.template, self.file, self.variables, self.incremental = template, file, variables, incremental
        self.config: dict[str, Any] = {}
        self.config_line: int | None = None
        self.asked = False

    def fail(self, message: str) -> ConfigError:
        return ConfigError(message, self.file, _template_line(self.template))

    def defined(self, function: str, args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None) -> None:
        """Raise a ConfigError when an argument of ``function`` is (or holds) a name the template does not know,
        most often a string without its quotes: ``config(schema=analytics)`` -> ``quote it: schema='analytics'``."""
        for key, value in [*((None, arg) for arg in args), *(kwargs or {}).items()]:
            undefined = _undefined(value)
            if undefined is None:
                continue
            message = undefined._undefined_message
            if kwargs is not None and key is not None:
                where = f"{function}({key}=...)"
            else:
                where = f"{function}({', '.join(_written(arg) for arg in args)})"
            if not _bare(undefined):
                raise self.fail(f"{where}: {message}")
            if key is not None:
                fix = f"{key}={_quoted(value)!r}"
            else:
                fix = f"{function}({', '.join(repr(_quoted(arg)) for arg in args)})"
            raise self.fail(f"{where}: {message}; quote it: {fix}")

    def ref(self, *args: Any, **kwargs: Any) -> str:
        self.defined("ref", args)
        if len(args) not in (1, 2) or not all(isinstance(a, str) for a in args) or set(kwargs) - {"v", "version"}:
            raise self.fail(
                f"ref{args!r}: ref() takes a model name (and optionally a package first), e.g. {{{{ ref('users') }}}}"
            )
        return _name(args[-1])

    def source(self, *args: Any) -> str:
        self.defined("source", args)
        if len(args) != 2 or not all(isinstance(a, str) for a in args):
            raise self.fail(
                f"source{args!r}: source() takes a source name and a table name, e.g. {{{{ source('crm', 'users') }}}}"
            )
        return f"{_name(args[0])}.{_name(args[1])}"

    def config_call(self, *args: Any, **kwargs: Any) -> str:
        self.defined("config", args, kwargs)
        if args:
            raise self.fail("config() takes keyword arguments, e.g. {{ config(materialized='incremental', unique_key='id') }}")
        self.config.update(kwargs)
        self.config_line = self.config_line or _template_line(self.template)
        return ""

    def is_incremental(self) -> bool:
        self.asked = True
        return self.incremental

    def var(self, name: Any, *default: Any) -> Any:
        self.defined("var", (name, *default))
        if str(name) in self.variables:
            return self.variables[str(name)]
        if default:
            return default[0]
        raise self.fail(
            f"var('{name}') is not set: add it under models: vars in sluice.yaml, or give a default: var('{name}', ...)."
            f"{did_you_mean(str(name), self.variables)}"
        )

    def env_var(self, name: Any, *default: Any) -> str:
        self.defined("env_var", (name, *default))
        value = os.environ.get(str(name))
        if value is not None:
            return value
        if default:
            return str(default[0])
        raise self.fail(f"env_var('{name}'): the environment has no {name}; set it, or give a default: env_var('{name}', ...)")

    def globals(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "source": self.source,
            "config": self.config_call,
            "is_incremental": self.is_incremental,
            "var": self.var,
            "env_var": self.env_var,
            "this": THIS,
        }


def _check_tags(text: str, file: str) -> jinja2.Template:
    """``text`` parsed and compiled; a syntax error or a refused statement is a ConfigError at its line."""
    try:
        tree = _ENVIRONMENT.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"unsupported template tag or Jinja syntax: {exc.message}; model files may use {_CONTEXT} and Jinja's "
            "statements (no macros; docs/models.md)",
            file,
            exc.lineno,
        ) from None
    for kind, word in _REFUSED.items():
        for node in tree.find_all(kind):
            raise ConfigError(
                f"unsupported template tag '{{% {word} %}}'; model files may use {_CONTEXT} and Jinja's statements, "
                "not macros (docs/models.md)",
                file,
                node.lineno,
            )
    return _ENVIRONMENT.from_string(text)


def _render(template: jinja2.Template, context: _Context) -> str:
    try:
        return _unmarked(template.render(context.globals()))
    except ConfigError:
        raise
    except jinja2.UndefinedError as exc:
        raise ConfigError(
            f"unsupported template expression: {exc.message}; model files may use {_CONTEXT} (docs/models.md)",
            context.file,
            _error_line(exc),
        ) from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        why = " ".join(str(exc).split())
        raise ConfigError(f"the template failed: {type(exc).__name__}: {why}", context.file, _error_line(exc)) from None


def render(
    text: str, file: str, variables: Mapping[str, Any] | None = None
) -> tuple[str, str | None, dict[str, Any], int | None]:
    """``text`` rendered for a full and an incremental run (None when it never asks ``is_incremental()``),
    its ``config()`` arguments and the line of the first ``config()`` call. ``variables`` are what
    ``var()`` reads. Raises ConfigError (file and line) for a refused tag, a syntax error or a bad call."""
    template = _check_tags(_marked(text), file)
    full = _Context(template, file, variables or {}, incremental=False)
    full_sql = _render(template, full)
    if not full.asked:
        return full_sql, None, full.config, full.config_line
    incremental = _Context(template, file, variables or {}, incremental=True)
    return full_sql, _render(template, incremental), full.config, full.config_line
