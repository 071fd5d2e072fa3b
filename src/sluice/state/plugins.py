"""The built-in state stores, chosen by URL scheme."""

from __future__ import annotations

from sluice.plugins.base import Plugin, Settings


class StateOptions(Settings):
    """A state store takes no options besides its URL."""


PLUGINS: list[Plugin] = [
    Plugin(
        "state",
        "sqlite",
        StateOptions,
        "sluice.state.registry:open_sqlite",
        "A SQLite file (default: .sluice/state.db).",
        schemes=("sqlite",),
    ),
    Plugin(
        "state",
        "postgresql",
        StateOptions,
        "sluice.state.registry:open_postgres",
        "PostgreSQL, shared by the processes of a distributed deployment.",
        schemes=("postgresql", "postgres"),
        extra="postgres",
        modules=("psycopg",),
    ),
]
