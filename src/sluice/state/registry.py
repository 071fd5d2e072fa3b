"""Open a state store from its URL through the state plugins: ``sqlite:///path`` (default) or ``postgresql://...``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

from sluice.plugins import Settings
from sluice.plugins.urls import resolve_url
from sluice.state.base import StateStore

StateFactory = Callable[[str, Settings, "Path | None"], StateStore]


def open_state(url: str, root: Path | None = None) -> StateStore:
    """The state store for ``url``; relative sqlite paths are relative to ``root``.

    Raises ConfigError for an unknown scheme, MissingExtra when the driver is not installed.
    """
    plugin, options = resolve_url("state", url, label="state store")
    return cast(StateFactory, plugin.load())(url, options, root)


def open_sqlite(url: str, options: Settings, root: Path | None) -> StateStore:
    from sluice.state.sqlite import SqliteStateStore
    from sluice.urls import sqlite_path

    return SqliteStateStore(sqlite_path(url, root))


def open_postgres(url: str, options: Settings, root: Path | None) -> StateStore:
    from sluice.state.postgres import PostgresStateStore

    return PostgresStateStore(url)
