"""Choose the destination for a connection by its URL scheme through the destination plugins.

Example::

    dest = open_destination(project.connections["warehouse"], root=project.root)
    try:
        dest.write("analytics.dim_users", reader, mode="merge", key=["id"], load_id="run-1:3001")
    finally:
        dest.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from sluice.destinations.base import Destination
from sluice.errors import ConfigError
from sluice.plugins import Plugin, PluginError, registry
from sluice.project.model import ConnectionSpec


def destination_plugin(connection: ConnectionSpec) -> Plugin:
    """The destination plugin serving the connection's scheme; ConfigError naming the connection otherwise."""
    try:
        return registry().for_scheme("destination", connection.scheme, what=f"connection '{connection.name}' as a destination")
    except PluginError as exc:
        raise ConfigError(exc.message, source=connection.origin.file, line=connection.origin.line) from None


def open_destination(connection: ConnectionSpec, root: Path) -> Destination:
    """The destination for ``connection``; relative ``sqlite:///`` and ``duckdb:///`` paths are under ``root``.

    Raises ConfigError naming the connection when its scheme cannot be written to, MissingExtra for a missing driver.
    """
    cls = cast("type[Destination]", destination_plugin(connection).load())
    return cls(connection, root)
