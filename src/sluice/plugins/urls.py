"""Plugins chosen by a URL (buses, state stores): the scheme picks the plugin, the query string its options.

>>> plugin, options = resolve_url("bus", "kafka://127.0.0.1:29092?partitions=12")
>>> plugin.name, options.partitions
('kafka', 12)
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from sluice.errors import ConfigError
from sluice.plugins.base import Plugin, PluginError, PluginKind, Settings
from sluice.plugins.options import convert_options
from sluice.plugins.registry import registry
from sluice.urls import connection_scheme


def url_plugin(
    kind: PluginKind, url: str, *, label: str, file: str | None = None, line: int | None = None
) -> tuple[Plugin | None, Settings | None, list[ConfigError]]:
    """The plugin serving ``url``'s scheme and its options from the query string, or the problems found."""
    if ":" not in url:
        return None, None, [ConfigError(f"{label}: {url!r} is not a URL (scheme://...)", file, line)]
    try:
        plugin = registry().for_scheme(kind, connection_scheme(url), what=label)
    except PluginError as exc:
        return None, None, [ConfigError(str(exc), file, line)]
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    options, problems = convert_options(plugin.options, query, label=f"{label} {url!r}", file=file, line=line, strict=False)
    return plugin, options, problems


def resolve_url(kind: PluginKind, url: str, *, label: str = "") -> tuple[Plugin, Settings]:
    """:func:`url_plugin`, raising the first problem as a ConfigError."""
    plugin, options, problems = url_plugin(kind, url, label=label or kind)
    if problems or plugin is None or options is None:
        raise problems[0]
    return plugin, options
