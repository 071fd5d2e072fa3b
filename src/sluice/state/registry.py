"""Open a state store from its URL: ``sqlite:///path`` (default) or ``postgresql://...``."""

from __future__ import annotations

from pathlib import Path

from sluice.errors import ConfigError, did_you_mean
from sluice.state.base import StateStore
from sluice.urls import sqlite_path, url_scheme

SCHEMES = ("sqlite", "postgresql")


def open_state(url: str, root: Path | None = None) -> StateStore:
    """The state store for ``url``; relative sqlite paths are relative to ``root``."""
    scheme = url_scheme(url)
    if scheme == "sqlite":
        from sluice.state.sqlite import SqliteStateStore

        path = sqlite_path(url, root)
        return SqliteStateStore(path)
    if scheme in ("postgresql", "postgres"):
        from sluice.state.postgres import PostgresStateStore

        return PostgresStateStore(url)
    raise ConfigError(
        f"unknown state store URL scheme '{scheme}' in {url!r} (supported: {', '.join(SCHEMES)}).{did_you_mean(scheme, SCHEMES)}"
    )
