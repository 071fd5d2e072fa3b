"""Open a bus from its URL: ``sqlite:///path`` (embedded log) or ``kafka://host:port`` (later)."""

from __future__ import annotations

from pathlib import Path

from sluice.bus.base import Bus
from sluice.errors import ConfigError, did_you_mean

SCHEMES = ("sqlite",)


def open_bus(url: str, root: Path | None = None) -> Bus:
    """The bus for ``url``. Relative sqlite paths are relative to ``root`` (the project folder)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from sluice.bus.embedded import EmbeddedBus
        from sluice.sqlite_file import sqlite_path

        path = sqlite_path(url, root)
        return EmbeddedBus(path)
    raise ConfigError(
        f"unknown bus URL scheme '{scheme}' in {url!r} (supported: {', '.join(SCHEMES)}).{did_you_mean(scheme, SCHEMES)}"
    )
