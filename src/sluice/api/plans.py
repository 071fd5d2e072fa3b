"""Compiled plans of GraphQL queries: a repeated query skips field collection and compilation.

A :class:`Plan` is the SQL text of one query operation plus how to build its bind parameters from the request's
variables. It is cached by :func:`plan_key`: the document text, the operation name, the schema version (a
catalog change makes a new version, so plans of the old one are never used again), the role and the claims
(row filters read claims; they become bind parameters, but a plan is only shared by requests with the same
claims), and the *shape* of the coerced variables: the Python type of each ``int``, ``float`` or ``str`` value,
and the exact value (its ``repr``) of every other one (booleans, lists, input objects, dates, ``None``), since
those may change the SQL text (``@skip(if:)``, ``_is_null``, a ``where`` object).

Which parameters come from which variable is found while compiling, by *tagging*: each ``int``, ``float`` and
``str`` variable is compiled as a tagged subclass of its type carrying its name, and
:meth:`sluice.api.compiler.Compiler.param` records the parameters that receive one unchanged. Any other use
of a tagged value while compiling (a comparison, arithmetic, ``str()``, formatting, hashing, a method or
attribute: the overridden special methods and ``__getattribute__``) marks the compile as *tainted*: the value
shaped the SQL or a parameter indirectly (``limit: $n`` taken with ``min``, a cursor decoded, a ``_like``
pattern escaped), and that plan is not cached (each such request compiles as before). Only plain query
operations on one database are planned: no introspection, no cursor pages, no subscription, no mutation.

Reusing a plan costs graphql-core's coercion of the variables (their types are checked on every request)
and one :meth:`~sluice.api.dialects.Dialect.bind` per variable parameter. A PostgreSQL plan also carries its
statement in PostgreSQL's own placeholder form (:class:`Positional`: ``$1``, ``$2``... in the order of their
first use, made once when the plan is made), which :mod:`sluice.api.async_pg` runs with asyncpg.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.api.catalog import Column
from sluice.api.dialects import Dialect
from sluice.api.principal import Principal

PLAN_CACHE_SIZE = 1000
"""Plans kept (least recently used dropped first)."""

_SKIP = {
    "__new__",
    "__init__",
    "__getattribute__",
    "__setattr__",
    "__delattr__",
    "__init_subclass__",
    "__subclasshook__",
    "__class__",
    "__doc__",
    "__dir__",
    "__class_getitem__",
    "__getnewargs__",
}


class Probe:
    """The record of one compile: ``tainted`` once a tagged value was used other than as a parameter."""

    __slots__ = ("tainted",)

    def __init__(self) -> None:
        self.tainted = False


def _mark(value: object) -> None:
    probe: Probe = object.__getattribute__(value, "__dict__")["probe"]
    probe.tainted = True


def _tainting(base: type, name: str) -> Any:
    original = getattr(base, name)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark(self)
        return original(self, *args, **kwargs)

    method.__name__ = name
    return method


def _tagged_type(base: type) -> type:
    namespace: dict[str, Any] = {
        name: _tainting(base, name)
        for name in dir(base)
        if name.startswith("__") and name.endswith("__") and name not in _SKIP and callable(getattr(base, name))
    }

    def __getattribute__(self: Any, name: str) -> Any:
        if name not in ("__class__", "__dict__"):
            _mark(self)
        return object.__getattribute__(self, name)

    namespace["__getattribute__"] = __getattribute__
    namespace["__doc__"] = f"A {base.__name__} variable value being compiled (see sluice.api.plans)."
    return type(f"Tagged{base.__name__.capitalize()}", (base,), namespace)


_TYPES: dict[type, type] = {base: _tagged_type(base) for base in (int, float, str)}
"""The tagged subclass (``TaggedInt``, ``TaggedFloat``, ``TaggedStr``) of each tagged type."""
_TAGGED = frozenset(_TYPES.values())


def is_tagged(value: object) -> bool:
    """Whether ``value`` is a tagged variable value (checked without tainting it)."""
    return type(value) in _TAGGED


def untag(value: object) -> tuple[str, Any]:
    """``(variable name, plain value)`` of a tagged value, without tainting it."""
    fields = object.__getattribute__(value, "__dict__")
    return fields["name"], fields["raw"]


def tagged(variables: Mapping[str, Any], probe: Probe) -> dict[str, Any]:
    """``variables`` (coerced) with each ``int``, ``float`` and ``str`` value (exactly those types) tagged."""
    out: dict[str, Any] = {}
    for name, value in variables.items():
        kind = _TYPES.get(type(value))
        if kind is None:
            out[name] = value
            continue
        item = kind(value)
        fields = object.__getattribute__(item, "__dict__")
        fields.update(name=name, raw=value, probe=probe)
        out[name] = item
    return out


def plan_key(query: str, name: str | None, version: int, principal: Principal, variables: Mapping[str, Any]) -> tuple[Any, ...]:
    """The cache key of a query operation run with ``variables`` (coerced) by ``principal`` (see the module)."""
    shape = tuple(
        (n, type(v).__name__) if type(v) in _TYPES else (n, type(v).__name__, repr(v)) for n, v in sorted(variables.items())
    )
    claims = json.dumps(principal.claims, sort_keys=True, default=repr) if principal.claims else ""
    return (query, name, version, principal.role, claims, shape)


_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_NEUTRAL = frozenset({int, str, bool, type(None)})
"""Parameter value types that asyncpg (the type PostgreSQL infers for ``$n``) and psycopg (the type it sends
with the value: ``int2``..``numeric`` for an int, ``unknown`` for a str) compare and filter alike; a value of
any other type (a float: ``float8`` against a ``numeric`` column; dates, lists, decimals) keeps psycopg."""


def _neutral(value: object) -> bool:
    """Whether asyncpg may bind ``value`` (see :data:`_NEUTRAL`; a str holding NUL is refused by psycopg itself,
    with its own message, so it keeps psycopg)."""
    kind = type(value)
    return kind in _NEUTRAL and not (kind is str and "\x00" in value)  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Positional:
    """A plan's statement with ``$1``, ``$2``... placeholders (PostgreSQL's wire protocol, which asyncpg takes)
    instead of psycopg's ``%(name)s``: ``sql``, and per placeholder in order ``slots``: (variable name, None,
    column) for a value from the variables, or (None, constant value, None). ``neutral``: every constant is of
    a type both drivers bind alike (see :meth:`Plan.args`)."""

    sql: str
    slots: tuple[tuple[str | None, Any, Column | None], ...]
    neutral: bool


def positional(sql: str, constants: Mapping[str, Any], bindings: tuple[tuple[str, str, Column | None], ...]) -> Positional:
    """``sql`` (psycopg's ``%(name)s`` placeholders, ``%%`` for ``%``) as :class:`Positional`: a name used twice
    is one ``$n``. Raises KeyError when a placeholder names neither a constant nor a binding."""
    numbers: dict[str, int] = {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in numbers:
            numbers[name] = len(numbers) + 1
        return f"${numbers[name]}"

    text = _PLACEHOLDER.sub(replace, sql)
    variables = {param: (variable, column) for param, variable, column in bindings}
    slots: list[tuple[str | None, Any, Column | None]] = []
    for name in numbers:
        if name in variables:
            slots.append((variables[name][0], None, variables[name][1]))
        else:
            slots.append((None, constants[name], None))
    neutral = all(variable is not None or _neutral(value) for variable, value, _ in slots)
    return Positional(text, tuple(slots), neutral)


@dataclass(frozen=True, slots=True)
class Plan:
    """One statement of a query operation: ``connection`` (the database), ``sql``, the parameters that do not
    depend on the variables (``constants``, bound already) and those that do (``bindings``: parameter name,
    variable name, column the value is bound for), ``label`` (the operation label of the metrics) and, for
    PostgreSQL, ``positional``: the same statement with ``$n`` placeholders (:func:`positional`)."""

    connection: str
    sql: str
    constants: dict[str, Any]
    bindings: tuple[tuple[str, str, Column | None], ...]
    label: str
    positional: Positional | None = None

    def params(self, dialect: Dialect, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The bind parameters for ``variables`` (coerced, of the plan's shape)."""
        params = dict(self.constants)
        for param, variable, column in self.bindings:
            params[param] = dialect.bind(variables[variable], column)
        return params

    def args(self, dialect: Dialect, variables: Mapping[str, Any]) -> list[Any] | None:
        """The values of :attr:`positional`'s ``$1``, ``$2``... for ``variables`` (coerced, of the plan's shape);
        None when the plan has no positional form or a value is not an ``int``, ``str``, ``bool`` or None
        (psycopg runs that request: the parameter types the two drivers give PostgreSQL could compare apart)."""
        form = self.positional
        if form is None or not form.neutral:
            return None
        args: list[Any] = []
        for variable, value, column in form.slots:
            if variable is not None:
                value = dialect.bind(variables[variable], column)
                if not _neutral(value):
                    return None
            args.append(value)
        return args


class PlanCache:
    """Plans by :func:`plan_key`, least recently used dropped beyond ``size``; safe across threads.
    ``hits`` and ``misses`` count look-ups (a miss is a request that compiled)."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._plans: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Plan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                self.misses += 1
                return None
            self.hits += 1
            self._plans.move_to_end(key)
            return plan

    def put(self, key: tuple[Any, ...], plan: Plan) -> None:
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)
