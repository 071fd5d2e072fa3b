"""Every plugin Sluice knows: the built-in ones and those third-party packages register.

Built-ins are declared in each seam's ``plugins.py`` (:data:`BUILTIN_MODULES`). A third-party package
adds plugins through the ``sluice.plugins`` entry-point group; the entry point names a
:class:`~sluice.plugins.base.Plugin` or a list of them::

    # pyproject.toml of the package sluice-hello
    [project.entry-points."sluice.plugins"]
    hello = "sluice_hello.plugin:PLUGINS"

Looking a plugin up never imports a driver: only :meth:`Plugin.load` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import lru_cache
from importlib.metadata import entry_points

from sluice.errors import did_you_mean
from sluice.plugins.base import KINDS, Plugin, PluginError, PluginKind

ENTRY_POINT_GROUP = "sluice.plugins"
BUILTIN_MODULES = (
    "sluice.connectors.plugins",
    "sluice.destinations.plugins",
    "sluice.lake.plugins",
    "sluice.transforms.plugins",
    "sluice.bus.plugins",
    "sluice.state.plugins",
    "sluice.cdc.plugins",
    "sluice.checks.plugins",
)


class Registry:
    """Plugins by kind and name, and by kind and URL scheme. Raises PluginError on a clash."""

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self._by_name: dict[tuple[str, str], Plugin] = {}
        self._by_scheme: dict[tuple[str, str], Plugin] = {}
        for plugin in plugins:
            self.add(plugin)

    def add(self, plugin: Plugin) -> None:
        """Register ``plugin``; a second plugin of the same kind and name (or scheme) is a PluginError."""
        if plugin.kind not in KINDS:
            raise PluginError(
                f"plugin {plugin.name!r} from {plugin.package} has unknown kind {plugin.kind!r} (kinds: {', '.join(KINDS)})"
            )
        other = self._by_name.get((plugin.kind, plugin.name))
        if other is not None:
            raise PluginError(
                f"two {plugin.kind} plugins are named {plugin.name!r}: from {other.package} and from {plugin.package}"
            )
        for scheme in plugin.schemes:
            other = self._by_scheme.get((plugin.kind, scheme))
            if other is not None:
                raise PluginError(
                    f"{plugin.kind} plugins {other.name!r} ({other.package}) and {plugin.name!r} ({plugin.package}) "
                    f"both claim the URL scheme {scheme}://"
                )
            self._by_scheme[(plugin.kind, scheme)] = plugin
        self._by_name[(plugin.kind, plugin.name)] = plugin

    def of_kind(self, kind: PluginKind) -> list[Plugin]:
        """Plugins of ``kind``, in registration order."""
        return [plugin for (k, _), plugin in self._by_name.items() if k == kind]

    def all(self) -> list[Plugin]:
        """Every plugin, grouped by kind in :data:`KINDS` order."""
        return [plugin for kind in KINDS for plugin in self.of_kind(kind)]

    def names(self, kind: PluginKind) -> list[str]:
        return [plugin.name for plugin in self.of_kind(kind)]

    def schemes(self, kind: PluginKind) -> list[str]:
        return [scheme for plugin in self.of_kind(kind) for scheme in plugin.schemes]

    def find(self, kind: PluginKind, name: str) -> Plugin | None:
        return self._by_name.get((kind, name))

    def get(self, kind: PluginKind, name: str) -> Plugin:
        """The ``kind`` plugin called ``name``; a PluginError with "Did you mean" otherwise."""
        plugin = self.find(kind, name)
        if plugin is None:
            known = self.names(kind)
            raise PluginError(f"unknown {kind} {name!r}.{did_you_mean(name, known)} Known: {', '.join(known) or 'none'}")
        return plugin

    def find_scheme(self, kind: PluginKind, scheme: str) -> Plugin | None:
        return self._by_scheme.get((kind, scheme.lower()))

    def for_scheme(self, kind: PluginKind, scheme: str, what: str = "") -> Plugin:
        """The ``kind`` plugin serving ``scheme://``; a PluginError listing the supported schemes otherwise."""
        plugin = self.find_scheme(kind, scheme)
        if plugin is None:
            known = self.schemes(kind)
            hint = did_you_mean(scheme, known)
            supported = ", ".join(f"{s}://" for s in known)
            raise PluginError(f"{what or 'a ' + kind} cannot use {scheme}:// URLs.{hint} Supported: {supported}")
        return plugin


def builtin_plugins() -> list[Plugin]:
    """The plugins Sluice ships, from each seam's ``plugins`` module."""
    found: list[Plugin] = []
    for module in BUILTIN_MODULES:
        found.extend(importlib.import_module(module).PLUGINS)
    return found


def entry_point_plugins() -> list[Plugin]:
    """Plugins that installed packages register in the ``sluice.plugins`` entry-point group."""
    found: list[Plugin] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {point.name!r} ({point.value}) of {point.dist.name if point.dist else 'an installed package'}"
        try:
            value = point.load()
        except Exception as exc:
            raise PluginError(
                f"{where} cannot be loaded: {type(exc).__name__}: {exc}; reinstall or uninstall that package"
            ) from exc
        declared = [value] if isinstance(value, Plugin) else list(value) if isinstance(value, (list, tuple)) else None
        if declared is None or not all(isinstance(plugin, Plugin) for plugin in declared):
            raise PluginError(f"{where} must name a sluice.plugins.Plugin or a list of them, got {type(value).__name__}")
        found.extend(declared)
    return found


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry: built-ins first, then entry points (loaded once)."""
    return Registry([*builtin_plugins(), *entry_point_plugins()])
