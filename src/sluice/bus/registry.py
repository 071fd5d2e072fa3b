"""Open a bus from its URL: ``sqlite:///path`` (embedded log) or ``kafka://host:port[,host:port...]`` (Kafka).

Options go in the query string: ``retention_days`` for both; for Kafka also ``partitions`` (of each stage's
work topic, default 6) and ``namespace`` (a prefix of the Kafka names of topics and groups, so several
projects can share a cluster): ``kafka://127.0.0.1:29092?partitions=12&retention_days=3&namespace=team-a``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sluice.bus.base import Bus
from sluice.errors import ConfigError, did_you_mean
from sluice.urls import sqlite_path, url_scheme

SCHEMES = ("sqlite", "kafka")
KAFKA_OPTIONS = ("partitions", "retention_days", "namespace")


def open_bus(url: str, root: Path | None = None) -> Bus:
    """The bus for ``url``. Relative sqlite paths are relative to ``root`` (the project folder)."""
    scheme = url_scheme(url)
    if scheme == "sqlite":
        from sluice.bus.embedded import DEFAULT_RETENTION_DAYS, EmbeddedBus

        retention_days = _number(url, parse_qs(urlsplit(url).query), "retention_days", DEFAULT_RETENTION_DAYS)
        return EmbeddedBus(sqlite_path(url, root), retention_days)
    if scheme == "kafka":
        return open_kafka(url)
    raise ConfigError(
        f"unknown bus URL scheme '{scheme}' in {url!r} (supported: {', '.join(SCHEMES)}).{did_you_mean(scheme, SCHEMES)}"
    )


def _number(url: str, options: dict[str, list[str]], name: str, default: float) -> float:
    text = options.get(name, [str(default)])[-1]
    try:
        return float(text)
    except ValueError:
        what = "a number of days (0 keeps everything)" if name == "retention_days" else "a positive whole number"
        raise ConfigError(f"{name} in {url!r} must be {what}, got {text!r}") from None


def open_kafka(url: str) -> Bus:
    """``kafka://host:port[,host:port...][?partitions=N&retention_days=D&namespace=NAME]``; the port defaults to 9092."""
    from sluice.bus.kafka import DEFAULT_PARTITIONS, DEFAULT_RETENTION_DAYS, KafkaBus

    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.fragment or "@" in parts.netloc:
        raise ConfigError(f"a Kafka bus URL is kafka://host:port[,host:port...][?partitions=N], got {url!r}")
    servers = []
    for server in parts.netloc.split(","):
        host, _, port = server.strip().rpartition(":") if ":" in server else (server.strip(), "", "9092")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{server.strip() or 'an empty server'!r} in {url!r} is not host:port (e.g. kafka://127.0.0.1:29092)"
            )
        servers.append(f"{host}:{port}")
    options = parse_qs(parts.query, keep_blank_values=True)
    for name in options:
        if name not in KAFKA_OPTIONS:
            raise ConfigError(
                f"unknown option {name!r} in {url!r} (supported: {', '.join(KAFKA_OPTIONS)}).{did_you_mean(name, KAFKA_OPTIONS)}"
            )
    partitions = _number(url, options, "partitions", DEFAULT_PARTITIONS)
    if partitions < 1 or partitions != int(partitions):
        raise ConfigError(f"partitions in {url!r} must be a positive whole number, got {options['partitions'][-1]!r}")
    retention_days = _number(url, options, "retention_days", DEFAULT_RETENTION_DAYS)
    namespace = options.get("namespace", [""])[-1]
    if namespace and not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", namespace):
        raise ConfigError(f"namespace in {url!r} may only use letters, digits, '.', '_' and '-', got {namespace!r}")
    return KafkaBus(",".join(servers), partitions=int(partitions), retention_days=retention_days, namespace=namespace)
