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
and one :meth:`~sluice.api.dialects.Dialect.bind` per variable parameter.
"""

from __future__ import annotations

import json
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


@dataclass(frozen=True, slots=True)
class Plan:
    """One statement of a query operation: ``connection`` (the database), ``sql``, the parameters that do not
    depend on the variables (``constants``, bound already) and those that do (``bindings``: parameter name,
    variable name, column the value is bound for), ``label`` (the operation label of the metrics)."""

    connection: str
    sql: str
    constants: dict[str, Any]
    bindings: tuple[tuple[str, str, Column | None], ...]
    label: str

    def params(self, dialect: Dialect, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The bind parameters for ``variables`` (coerced, of the plan's shape)."""
        params = dict(self.constants)
        for param, variable, column in self.bindings:
            params[param] = dialect.bind(variables[variable], column)
        return params


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
