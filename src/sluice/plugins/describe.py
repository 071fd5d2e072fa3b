"""What ``sluice plugins`` shows: each plugin and its options, read from the options' JSON Schema.

>>> from sluice.plugins.registry import registry
>>> info = describe(registry().get("source", "faker"))
>>> [(o.name, o.type, o.default_text) for o in info.options][:2]
[('schema', 'one of: products, transactions, users', 'required'), ('rows', 'int >= 0', '1000')]

Types, defaults and descriptions come from ``msgspec.json.schema`` of the options structure, the same
schema ``sluice schema`` prints, so the listing, the reference pages and the editor agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.plugins.base import Plugin, PluginKind, Settings
from sluice.plugins.registry import registry
from sluice.plugins.schema import components

_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "null", "object": "mapping"}
REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One option: its name, type as a person reads it (``int >= 1``), default and description."""

    name: str
    type: str
    required: bool
    default: Any
    doc: str

    @property
    def default_text(self) -> str:
        """``required``, or the default as JSON (``","``, ``1000``, ``null``)."""
        return REQUIRED if self.required else json.dumps(self.default, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One plugin as ``sluice plugins`` lists it."""

    kind: str
    name: str
    summary: str
    schemes: tuple[str, ...]
    extra: str | None
    missing: tuple[str, ...]
    package: str
    options_name: str
    options_doc: str
    options: list[OptionInfo] = field(default_factory=list)

    @property
    def installed(self) -> bool:
        return not self.missing

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "schemes": list(self.schemes),
            "extra": self.extra,
            "installed": self.installed,
            "missing_modules": list(self.missing),
            "package": self.package,
            "options_type": self.options_name,
            "options": [
                {
                    "name": o.name,
                    "type": o.type,
                    "required": o.required,
                    "default": None if o.required else o.default,
                    "doc": o.doc,
                }
                for o in self.options
            ],
        }


def type_text(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """A property's JSON Schema as a short type: ``list[str] | null``, ``int >= 1``, ``one of: a, b``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[1]
        return str(defs.get(name, {}).get("title", name))
    if "anyOf" in schema:
        return " | ".join(type_text(choice, defs) for choice in schema["anyOf"])
    if "enum" in schema:
        return "one of: " + ", ".join(str(value) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return f"list[{type_text(schema.get('items', {}), defs) or 'any'}]"
    if kind == "object" and "additionalProperties" in schema:
        return f"dict[str, {type_text(schema['additionalProperties'], defs)}]"
    base = _SIMPLE.get(str(kind), "any") if kind else ""
    return " ".join([base, *_constraints(schema)]).strip()


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    low, high = schema.get("minLength"), schema.get("maxLength")
    if low is not None and low == high:
        parts.append(f"(length {low})")
    else:
        if low:
            parts.append(f"(length >= {low})")
        if high is not None:
            parts.append(f"(length <= {high})")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    return parts


def struct_options(settings: type[Settings]) -> tuple[str, str, list[OptionInfo]]:
    """The ``$defs`` name, description and options of a structure, from its JSON Schema."""
    names, defs = components([settings])
    definition = defs[names[0]]
    required = set(definition.get("required", []))
    options = [
        OptionInfo(
            name=name,
            type=type_text(prop, defs),
            required=name in required,
            default=prop.get("default"),
            doc=property_doc(prop, defs),
        )
        for name, prop in definition.get("properties", {}).items()
    ]
    return names[0], str(definition.get("description", "")), options


def property_doc(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """A property's description: its own, one of its ``anyOf`` choices' (``ColumnTypes | None``), or its structure's."""
    for choice in [prop, *prop.get("anyOf", [])]:
        if choice.get("description"):
            return str(choice["description"])
    for choice in [prop, *prop.get("anyOf", [])]:
        if "$ref" in choice:
            return str(defs.get(str(choice["$ref"]).rsplit("/", 1)[1], {}).get("description", ""))
    return ""


def describe(plugin: Plugin) -> PluginInfo:
    """A plugin and its options (nothing is imported: installed means its driver modules are found)."""
    options_name, options_doc, options = struct_options(plugin.options)
    return PluginInfo(
        kind=plugin.kind,
        name=plugin.name,
        summary=plugin.summary,
        schemes=plugin.schemes,
        extra=plugin.extra,
        missing=tuple(plugin.missing_modules()),
        package=plugin.package,
        options_name=options_name,
        options_doc=options_doc,
        options=options,
    )


def describe_all(kind: PluginKind | None = None, plugins: Iterable[Plugin] | None = None) -> list[PluginInfo]:
    """Every plugin (of ``kind``), in registry order."""
    chosen = list(plugins) if plugins is not None else registry().all()
    return [describe(plugin) for plugin in chosen if kind is None or plugin.kind == kind]


def _plain(text: str) -> str:
    return text


def render_text(infos: Iterable[PluginInfo], bold: Callable[[str], str] = _plain, dim: Callable[[str], str] = _plain) -> str:
    """The listing ``sluice plugins`` prints: a heading per plugin and an aligned row per option."""
    lines: list[str] = []
    for info in infos:
        heading = f"{info.kind} {info.name}"
        lines.append(f"{bold(heading)}  {info.summary}")
        details = []
        if info.schemes:
            details.append("schemes: " + ", ".join(f"{s}://" for s in info.schemes))
        if info.extra:
            state = "installed" if info.installed else f"not installed: pip install 'sluice[{info.extra}]'"
            details.append(f"extra: {info.extra} ({state})")
        elif not info.installed:
            details.append(f"not installed: {', '.join(info.missing)}")
        if info.package != "sluice":
            details.append(f"from: {info.package}")
        if details:
            lines.append("  " + "; ".join(details))
        if not info.options:
            lines.append(dim("  no options"))
        width_name = max((len(o.name) for o in info.options), default=0)
        width_type = max((len(o.type) for o in info.options), default=0)
        width_default = max((len(o.default_text) for o in info.options), default=0)
        for option in info.options:
            row = f"  {option.name:<{width_name}}  {option.type:<{width_type}}  {option.default_text:<{width_default}}  "
            lines.append(f"{row}{dim(option.doc)}".rstrip())
        lines.append("")
    return "\n".join(lines)
