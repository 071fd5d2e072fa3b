"""The base of the ``sluice.yaml`` reader (:mod:`sluice.project.yaml_file`): problems collected with their line,
mappings checked against their typed structure, plugins and connections looked up by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from sluice.errors import ConfigError, did_you_mean
from sluice.plugins import Plugin, PluginError, Settings, registry
from sluice.plugins.options import convert_options
from sluice.project.model import ConnectionSpec
from sluice.project.yaml_tree import YamlMap, plain
from sluice.transforms.plugins import ENGINE_DEFAULT
from sluice.urls import connection_scheme

S = TypeVar("S", bound=Settings)


class ReaderBase:
    """What every part of the reader shares: the file, its problems, its connections and default engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.problems: list[ConfigError] = []
        self.connections: dict[str, ConnectionSpec] = {}
        self.default_engine: str | None = None

    def problem(self, message: str, line: int | None) -> None:
        self.problems.append(ConfigError(message, self.file, line))

    def check(
        self,
        settings: type[S],
        raw: YamlMap,
        label: str,
        *,
        ignore: tuple[str, ...] = (),
        what: str = "key",
        file: str | None = None,
        placeholder: Mapping[str, Any] | None = None,
    ) -> S | None:
        """``raw`` as ``settings``: every problem (with its key's line, in ``file``, default this file) goes to
        :attr:`problems`; with ``placeholder``, each key's own checks too (:func:`convert_options`)."""
        for key, line in raw.duplicates:
            self.problem(f"{label}: key '{key}' is given twice; keep one", line)
        value, problems = convert_options(
            settings,
            raw,
            label=label,
            file=file or self.file,
            line=raw.line,
            key_lines=raw.key_lines,
            ignore=ignore,
            what=what,
            placeholder=placeholder,
        )
        self.problems.extend(problems)
        return value

    def mapping(self, raw: Any, label: str, line: int | None, example: str) -> YamlMap | None:
        if isinstance(raw, YamlMap):
            return raw
        self.problem(f"{label} must be a mapping such as {example}, got {plain(raw)!r}", line)
        return None

    def engine_name(self, value: str | None, label: str, line: int | None) -> str | None:
        """``value`` of an ``engine:`` key checked against the engine plugins: None for the default (duckdb)."""
        if value is None or value == ENGINE_DEFAULT:
            return None
        # sql and python are the kinds of the DuckDB default; duckdb (as a plugin), warehouse and dbt run models only
        model_only = ("sql", "python", ENGINE_DEFAULT, "warehouse", "dbt")
        choices = [ENGINE_DEFAULT, *(p.name for p in registry().of_kind("engine") if p.name not in model_only)]
        if value not in choices:
            self.problem(
                f"{label}: unknown engine {value!r} (engines: {', '.join(choices)}).{did_you_mean(value, choices)}", line
            )
            return None
        return value

    def plugin(self, kind: Any, name: str, label: str, line: int | None) -> Plugin | None:
        try:
            plugin = registry().get(kind, name)
        except PluginError as exc:
            self.problem(f"{label}: {exc.message}", line)
            return None
        self.installed(plugin, label, line)
        return plugin

    def installed(self, plugin: Plugin, label: str, line: int | None) -> None:
        try:
            plugin.check_installed()
        except PluginError as exc:
            self.problem(f"{label}: {exc.message}", line)

    def connection(self, name: Any, label: str, role: str, line: int | None) -> ConnectionSpec | None:
        if not isinstance(name, str) or not name:
            self.problem(f"{label}: {role} needs a 'connection' name (one of the project's connections)", line)
            return None
        connection = self.connections.get(name)
        if connection is None:
            known = ", ".join(sorted(self.connections)) or "none defined"
            hint = did_you_mean(name, self.connections)
            self.problem(f"{label}: unknown connection '{name}' in {role} (connections: {known}).{hint}", line)
        return connection

    def scheme_plugin(self, kind: Any, connection: ConnectionSpec, label: str, line: int | None) -> Plugin | None:
        scheme = connection_scheme(connection.url)
        plugin = registry().find_scheme(kind, scheme)
        if plugin is None:
            known = ", ".join(f"{s}://" for s in registry().schemes(kind))
            self.problem(
                f"{label}: connection '{connection.name}' is {scheme}://, which cannot be a {kind} (use one of: {known})", line
            )
            return None
        self.installed(plugin, f"{label}: {kind}", line)
        return plugin
