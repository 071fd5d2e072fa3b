"""Choose the destination for a connection by its URL scheme; drivers are imported only when used.

Example::

    dest = open_destination(project.connections["warehouse"], root=project.root)
    try:
        dest.write("analytics.dim_users", reader, mode="merge", key=["id"], load_id="run-1:3001")
    finally:
        dest.close()
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sluice.destinations.base import Destination
from sluice.errors import ConfigError, did_you_mean
from sluice.project.model import ConnectionSpec

# scheme -> (module, class); ``postgres://`` is normalised to ``postgresql`` by ConnectionSpec.scheme.
DESTINATIONS: dict[str, tuple[str, str]] = {
    "duckdb": ("sluice.destinations.duckdb", "DuckDBDestination"),
    "postgresql": ("sluice.destinations.postgres", "PostgresDestination"),
    "sqlite": ("sluice.destinations.sqlite", "SQLiteDestination"),
}


def open_destination(connection: ConnectionSpec, root: Path) -> Destination:
    """The destination for ``connection``; relative ``sqlite:///`` and ``duckdb:///`` paths are under ``root``.

    Raises ConfigError naming the connection when its scheme cannot be written to.
    """
    scheme = connection.scheme
    if scheme not in DESTINATIONS:
        supported = ", ".join(f"{name}://" for name in sorted(DESTINATIONS))
        raise ConfigError(
            f"connection '{connection.name}' uses '{scheme}://', which Sluice cannot write tables to; "
            f"supported destination schemes: {supported}.{did_you_mean(scheme, DESTINATIONS)}",
            source=connection.origin.file,
            line=connection.origin.line,
        )
    module_name, class_name = DESTINATIONS[scheme]
    cls: type[Destination] = getattr(importlib.import_module(module_name), class_name)
    return cls(connection, root)
