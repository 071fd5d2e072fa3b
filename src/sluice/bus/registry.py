"""Open a bus from its URL: ``sqlite:///path`` (embedded log) or ``kafka://host:port`` (later)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sluice.bus.base import Bus
from sluice.errors import ConfigError, did_you_mean

SCHEMES = ("sqlite",)


def open_bus(url: str, root: Path | None = None) -> Bus:
    """The bus for ``url``. Relative sqlite paths are relative to ``root`` (the project folder)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from sluice.bus.embedded import DEFAULT_RETENTION_DAYS, EmbeddedBus
        from sluice.sqlite_file import sqlite_path

        options = parse_qs(urlsplit(url).query)
        retention = options.get("retention_days", [str(DEFAULT_RETENTION_DAYS)])[0]
        try:
            retention_days = float(retention)
        except ValueError:
            raise ConfigError(
                f"retention_days in {url!r} must be a number of days (0 keeps everything), got {retention!r}"
            ) from None
        return EmbeddedBus(sqlite_path(url, root), retention_days)
    raise ConfigError(
        f"unknown bus URL scheme '{scheme}' in {url!r} (supported: {', '.join(SCHEMES)}).{did_you_mean(scheme, SCHEMES)}"
    )
