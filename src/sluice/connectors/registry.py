"""Resolve a source spec to its :class:`~sluice.connectors.base.Source` through the source plugins.

>>> from pathlib import Path
>>> from sluice.connectors.base import SourceContext
>>> from sluice.project.model import SourceSpec
>>> source = open_source(SourceSpec("faker", {"schema": "users", "rows": 3}), SourceContext(Path("."), {}))
>>> source.read().read_all().num_rows
3
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from sluice.connectors.base import Source, SourceContext
from sluice.connectors.plugins import SQL_KIND
from sluice.errors import TerminalError, did_you_mean
from sluice.plugins import Plugin, PluginError, registry
from sluice.project.model import ConnectionSpec, SourceSpec, connection_scheme


def source_plugin(kind: str, connection: str | None, connections: Mapping[str, ConnectionSpec]) -> Plugin:
    """The plugin that reads ``kind`` (for ``sql``, the one serving the connection's URL scheme).

    Raises PluginError naming the unknown kind, connection or scheme (with "Did you mean").
    """
    if kind != SQL_KIND:
        plugin = registry().find("source", kind)
        if plugin is None or plugin.schemes:
            kinds = [p.name for p in registry().of_kind("source") if not p.schemes] + [SQL_KIND]
            raise PluginError(f"unknown source type {kind!r}.{did_you_mean(kind, kinds)} Known types: {', '.join(kinds)}")
        return plugin
    spec = connections.get(connection) if connection else None
    if spec is None:
        known = ", ".join(sorted(connections)) or "none defined"
        hint = did_you_mean(str(connection), connections)
        raise PluginError(f"sql source: unknown connection {connection!r}.{hint} Known connections: {known}")
    return registry().for_scheme(
        "source", connection_scheme(spec.url), what=f"connection {spec.name!r} ({spec.origin}): a sql source"
    )


def open_source(spec: SourceSpec, context: SourceContext) -> Source:  # type: ignore[type-arg]
    """The source for ``spec``.

    Raises TerminalError for an unknown kind, connection or scheme, MissingExtra for a missing driver.
    """
    try:
        plugin = source_plugin(spec.kind, spec.get("connection"), context.connections)
    except PluginError as exc:
        raise TerminalError(str(exc)) from None
    source_class = cast("type[Source]", plugin.load())  # type: ignore[type-arg]
    return source_class(spec, context)
