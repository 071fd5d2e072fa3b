"""An object's ``source:`` and ``destination:`` in ``sluice.yaml``: the kind inferred when it is not given, a nested
``options:`` merged in, the plugin found by kind or by the connection's URL scheme, and its options checked
(part of :mod:`sluice.project.yaml_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice.connectors.plugins import SQL_KIND
from sluice.connectors.registry import source_plugin
from sluice.plugins import Plugin, PluginError, registry
from sluice.plugins.options import field_names
from sluice.project.model import DestinationSpec, SourceSpec
from sluice.project.yaml_reader import ReaderBase
from sluice.project.yaml_tree import YamlMap
from sluice.urls import connection_scheme


class SourcesReader(ReaderBase):
    """Reads sources and destinations."""

    def source(self, raw: Any, label: str, line: int | None) -> SourceSpec | None:
        if raw is None:
            return None
        mapping = self.mapping(raw, f"{label}: source", line, "{type: csv, path: data/x.csv}")
        if mapping is None:
            return None
        flat = flatten_options(mapping)
        kind = flat.get("type")
        if kind is None:
            kind = infer_source_kind(flat)
            if kind is None:
                self.problem(f"{label}: source needs a 'type' (csv, json, jsonl, parquet, faker, rest, kafka, sql)", mapping.line)
                return None
        plugin = self.source_plugin(str(kind), flat, label)
        if plugin is None:
            return None
        placeholder = getattr(plugin.options, "placeholder", None)  # every problem of independent options at once
        options = self.check(
            plugin.options, flat, f"{label}: {kind} source", ignore=("type",), what="option", placeholder=placeholder
        )
        return SourceSpec(str(kind), options) if options is not None else None

    def source_plugin(self, kind: str, flat: YamlMap, label: str) -> Plugin | None:
        if kind != SQL_KIND:
            try:
                plugin = source_plugin(kind, None, {})
            except PluginError as exc:
                self.problem(f"{label}: {exc.message}", flat.line_of("type"))
                return None
            self.installed(plugin, f"{label}: source", flat.line_of("type"))
            named = flat.get("connection")
            if isinstance(named, str):  # a source option 'connection' (rest, kafka) names one of the project's connections
                connection = self.connection(named, label, "source", flat.line_of("connection"))
                schemes: tuple[str, ...] = getattr(plugin.options, "connection_schemes", ())
                if connection is not None and schemes and connection_scheme(connection.url) not in schemes:
                    self.problem(
                        f"{label}: connection '{named}' is {connection_scheme(connection.url)}://; a {kind} source needs "
                        f"a {' or '.join(f'{s}://' for s in schemes)} connection",
                        flat.line_of("connection"),
                    )
            return plugin
        connection = self.connection(flat.get("connection"), label, "source", flat.line_of("connection"))
        if connection is None:
            return None
        return self.scheme_plugin("source", connection, label, flat.line_of("connection"))

    def destination(self, raw: Any, label: str, line: int | None) -> DestinationSpec | None:
        if raw is None:
            return None
        mapping = self.mapping(raw, f"{label}: destination", line, "{connection: warehouse, table: users}")
        if mapping is None:
            return None
        if isinstance(mapping.get("key"), str):
            mapping["key"] = [mapping["key"]]
        connection = self.connection(mapping.get("connection"), label, "destination", mapping.line_of("connection"))
        plugin = self.scheme_plugin("destination", connection, label, mapping.line_of("connection")) if connection else None
        settings = plugin.options if plugin is not None else DestinationSpec
        if plugin is not None and connection is not None:
            mapping = self.others_options(mapping, plugin, f"{label}: destination", connection.name)
        options = self.check(settings, mapping, f"{label}: destination", what="option")
        if plugin is None or not isinstance(options, DestinationSpec):
            return None
        return options

    def others_options(self, mapping: YamlMap, plugin: Plugin, label: str, connection: str) -> YamlMap:
        """``mapping`` without the keys that are options of another destination plugin only, each reported
        as such (``partition_by`` on a DuckDB connection: a PostgreSQL destination's option)."""
        own = set(field_names(plugin.options))
        foreign: dict[str, str] = {}
        for other in registry().all():
            if other.kind == "destination" and other.options is not plugin.options:
                for key in field_names(other.options):
                    if key not in own:
                        foreign.setdefault(key, other.name)
        found = [key for key in mapping if key in foreign]
        if not found:
            return mapping
        for key in found:
            self.problem(
                f"{label}: option {key!r} is an option of {foreign[key]} destinations, but connection '{connection}' is "
                f"a {plugin.name} one; remove it, or publish to a {foreign[key]} connection",
                mapping.line_of(key),
            )
        kept = YamlMap({key: value for key, value in mapping.items() if key not in found})
        kept.line, kept.key_lines, kept.duplicates = mapping.line, mapping.key_lines, mapping.duplicates
        return kept


def flatten_options(mapping: YamlMap) -> YamlMap:
    """A source mapping with a nested ``options:`` mapping merged in (each key keeps its own line)."""
    nested = mapping.get("options")
    if not isinstance(nested, YamlMap):
        return mapping
    flat = YamlMap({key: value for key, value in mapping.items() if key != "options"})
    flat.line = mapping.line
    flat.key_lines = {**mapping.key_lines, **nested.key_lines}
    flat.duplicates = [*mapping.duplicates, *nested.duplicates]
    for key, value in nested.items():
        if key in flat:
            flat.duplicates.append((str(key), nested.line_of(key) or 0))
        flat[key] = value
    return flat


def infer_source_kind(options: YamlMap) -> str | None:
    """The kind of a source without ``type``: ``faker`` (its ``faker:`` option renamed ``schema``, in place), SQL for a
    ``connection``, else the ``path``'s suffix (``ndjson`` read as ``jsonl``, ``pq`` as ``parquet``); None when
    nothing tells."""
    if "faker" in options:
        options["schema"] = options.pop("faker")
        options.key_lines["schema"] = options.key_lines.get("faker", options.line or 0)
        return "faker"
    if "connection" in options:
        return SQL_KIND
    path = options.get("path")
    if isinstance(path, str):
        suffix = Path(path).suffix.lower().lstrip(".")
        return {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    return None
