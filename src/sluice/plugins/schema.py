"""The JSON Schema of ``sluice.yaml`` (draft 2020-12), generated from the typed structures.

>>> schema = project_schema(builtin_plugins())
>>> schema["$schema"], schema["title"]
('https://json-schema.org/draft/2020-12/schema', 'sluice.yaml')

One source of truth: the top level, stages, connections and objects come from
:mod:`sluice.project.settings`; an object's ``source`` is an ``anyOf`` over every source plugin's
options (plus its ``type``: the plugins read over a connection share ``type: sql``), its
``destination`` over the destination plugins' options, and ``lake`` is a folder or a lake plugin's
options. ``msgspec.json.schema_components`` turns each structure into a schema, so a field's type,
range, default and description are written once, in Python.

The schema describes the canonical form; the reader also accepts two shorthands it does not cover
(a source's nested ``options:`` mapping and ``faker: users`` for ``type: faker, schema: users``).
The package ships the built-ins' schema as ``sluice/schema/sluice.schema.json`` (:data:`SHIPPED`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from sluice.plugins.base import Plugin, PluginKind, Settings
from sluice.plugins.registry import builtin_plugins, registry
from sluice.project.settings import ProjectSettings

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SHIPPED = Path(__file__).resolve().parents[1] / "schema" / "sluice.schema.json"
REGENERATE = "PYTHONPATH=src python3 -m sluice schema --builtin --output src/sluice/schema/sluice.schema.json"
SQL_TYPE = "sql"
REF = "#/$defs/{name}"


def source_type(plugin: Plugin) -> str:
    """What a project writes as a source's ``type``: ``sql`` for the plugins chosen by a connection's scheme."""
    return SQL_TYPE if plugin.schemes else plugin.name


def variants(plugins: Iterable[Plugin], kind: PluginKind) -> list[tuple[str, type[Settings], list[Plugin]]]:
    """The ``(type, options structure, plugins)`` a project can write for ``kind``, each pair once."""
    found: dict[tuple[str, type[Settings]], list[Plugin]] = {}
    for plugin in plugins:
        if plugin.kind == kind:
            name = source_type(plugin) if kind == "source" else plugin.name
            found.setdefault((name, plugin.options), []).append(plugin)
    return [(name, options, members) for (name, options), members in found.items()]


def components(structs: Iterable[type[Settings]]) -> tuple[list[str], dict[str, Any]]:
    """The ``$defs`` name of each structure and the ``$defs`` themselves (one msgspec call: names stay unique)."""
    schemas, defs = msgspec.json.schema_components(list(structs), ref_template=REF)
    return [schema["$ref"].rsplit("/", 1)[1] for schema in schemas], defs


def _with_type(base: dict[str, Any], kind: str, name: str, members: list[Plugin], *, required: bool) -> dict[str, Any]:
    """``base`` (an options structure's schema) with a ``type: name`` property first."""
    variant = copy.deepcopy(base)
    summaries = " ".join(dict.fromkeys(plugin.summary for plugin in members))
    schemes = [f"{scheme}://" for plugin in members for scheme in plugin.schemes]
    if schemes:
        summaries = f"Over a connection whose URL is {', '.join(schemes)}. {summaries}"
    variant["title"] = f"{name} {kind}"
    variant["description"] = summaries
    type_property = {"const": name, "description": f"The {kind} plugin ({name})."}
    variant["properties"] = {"type": type_property, **variant.get("properties", {})}
    variant["required"] = ["type", *variant.get("required", [])] if required else variant.get("required", [])
    return variant


def project_schema(plugins: Iterable[Plugin] | None = None) -> dict[str, Any]:
    """The JSON Schema of ``sluice.yaml`` for ``plugins`` (default: every registered plugin)."""
    chosen = list(plugins) if plugins is not None else registry().all()
    sources = variants(chosen, "source")
    lakes = variants(chosen, "lake")
    destinations = list(dict.fromkeys(plugin.options for plugin in chosen if plugin.kind == "destination"))
    channels = variants(chosen, "alert")
    option_structs = list(
        dict.fromkeys([*(s for _, s, _ in sources), *(s for _, s, _ in lakes), *destinations, *(s for _, s, _ in channels)])
    )
    names, defs = components([ProjectSettings, *option_structs])
    root_name, option_names = names[0], dict(zip(option_structs, names[1:], strict=True))

    source_refs = []
    for name, options, members in sources:
        key = f"source-{name}" if name != SQL_TYPE else f"source-sql-{option_names[options]}"
        defs[key] = _with_type(defs[option_names[options]], "source", name, members, required=True)
        source_refs.append({"$ref": REF.format(name=key)})
    lake_refs = []
    for name, options, members in lakes:
        key = f"lake-{name}"
        defs[key] = _with_type(defs[option_names[options]], "lake", name, members, required=False)
        lake_refs.append({"$ref": REF.format(name=key)})
    destination_refs = []
    for options in destinations:
        key = f"destination-{option_names[options]}"
        defs[key] = _destination(
            defs[option_names[options]], [p for p in chosen if p.kind == "destination" and p.options is options]
        )
        destination_refs.append({"$ref": REF.format(name=key)})
    channel_refs = []
    for name, options, members in channels:
        key = f"alert-{name}"
        defs[key] = _with_type(defs[option_names[options]], "alert channel", name, members, required=True)
        channel_refs.append({"$ref": REF.format(name=key)})
    for options in option_structs:
        defs.pop(option_names[options], None)
    if channel_refs and "AlertsSettings" in defs:  # alerts.channels: name -> one of the alert plugins' options
        defs["AlertsSettings"]["properties"]["channels"]["additionalProperties"] = {"anyOf": channel_refs}

    obj = defs["ObjectSettings"]["properties"]
    obj["source"] = _any_of(obj["source"], [*source_refs, {"type": "null"}])
    obj["destination"] = _any_of(obj["destination"], [*destination_refs, {"type": "null"}])
    root = defs.pop(root_name)
    top = root["properties"]
    top["lake"] = _any_of(top["lake"], [{"type": "string", "description": "The lake's folder."}, *lake_refs, {"type": "null"}])
    for key, kind in (("bus", "bus"), ("state", "state")):
        schemes = ", ".join(f"{s}://" for p in chosen if p.kind == kind for s in p.schemes)
        top[key]["description"] = f"{top[key]['description']} Schemes: {schemes}."
    root.pop("title", None)
    return {
        "$schema": DIALECT,
        "title": "sluice.yaml",
        "description": "A Sluice project: its objects, stages, connections and backends. Generated by 'sluice schema'.",
        **{key: value for key, value in root.items() if key != "description"},
        "$defs": dict(sorted(defs.items())),
    }


def _any_of(prop: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """``prop`` (a property's schema) restricted to ``choices``, keeping its description and default."""
    kept = {key: prop[key] for key in ("description", "default") if key in prop}
    return {
        "description": kept.get("description", ""),
        "anyOf": choices,
        **({"default": kept["default"]} if "default" in kept else {}),
    }


def _destination(base: dict[str, Any], members: list[Plugin]) -> dict[str, Any]:
    """A destination's options; ``key`` may also be one column name (the reader makes it a list)."""
    variant = copy.deepcopy(base)
    schemes = ", ".join(f"{scheme}://" for plugin in members for scheme in plugin.schemes)
    variant["description"] = f"A table over a connection whose URL is {schemes}. {variant.get('description', '')}".strip()
    key = variant.get("properties", {}).get("key")
    if key is not None and key.get("type") == "array":
        doc = key.pop("description", "")
        default = key.pop("default", None)
        variant["properties"]["key"] = {"description": doc, "anyOf": [{"type": "string"}, key], "default": default}
    return variant


def schema_text(plugins: Iterable[Plugin] | None = None) -> str:
    """:func:`project_schema` as the JSON text ``sluice schema`` prints (and the package ships)."""
    return json.dumps(project_schema(plugins), indent=2, ensure_ascii=False) + "\n"


def builtin_schema_text() -> str:
    """The schema of the built-in plugins alone: the shipped file's content."""
    return schema_text(builtin_plugins())
