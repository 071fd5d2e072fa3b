"""Open a bus from its URL through the bus plugins: ``sqlite:///path`` (embedded log) or ``kafka://host:port[,...]``.

Options go in the query string and are checked against the plugin's typed options
(:mod:`sluice.bus.plugins`): ``retention_days`` for both; for Kafka also ``partitions`` (of each
stage's work topic, default 6) and ``namespace`` (a prefix of the Kafka names of topics and groups, so
several projects can share a cluster): ``kafka://127.0.0.1:29092?partitions=12&retention_days=3&namespace=team-a``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

from sluice.bus.base import Bus
from sluice.bus.plugins import EmbeddedBusOptions, KafkaBusOptions
from sluice.plugins import Settings
from sluice.plugins.urls import resolve_url

BusFactory = Callable[[str, Settings, "Path | None"], Bus]


def open_bus(url: str, root: Path | None = None) -> Bus:
    """The bus for ``url``; relative sqlite paths are relative to ``root`` (the project folder).

    Raises ConfigError for an unknown scheme or option, MissingExtra when the driver is not installed.
    """
    plugin, options = resolve_url("bus", url, label="bus")
    return cast(BusFactory, plugin.load())(url, options, root)


def open_embedded(url: str, options: Settings, root: Path | None) -> Bus:
    """The embedded SQLite log at ``url``'s path."""
    from sluice.bus.embedded import EmbeddedBus
    from sluice.urls import sqlite_path

    assert isinstance(options, EmbeddedBusOptions)
    return EmbeddedBus(sqlite_path(url, root), options.retention_days)


def open_kafka(url: str, options: Settings, root: Path | None = None) -> Bus:
    """``kafka://host:port[,host:port...][?partitions=N&retention_days=D&namespace=NAME]``; the port defaults to 9092."""
    from sluice.bus.kafka import KafkaBus
    from sluice.urls import kafka_servers

    assert isinstance(options, KafkaBusOptions)
    return KafkaBus(
        kafka_servers(url), partitions=options.partitions, retention_days=options.retention_days, namespace=options.namespace
    )
