"""One plugin seam for every pluggable kind: sources, destinations, lakes, engines, buses, state stores.

A plugin is a :class:`~sluice.plugins.base.Plugin` descriptor: its kind, name, URL schemes, a typed
options structure (a ``msgspec.Struct``) and the ``module:attribute`` of its implementation, imported
only when the plugin is used. Built-in plugins are declared in each seam's ``plugins.py``; third-party
packages add theirs through the ``sluice.plugins`` entry-point group (see docs/plugins.md).
"""

from __future__ import annotations

from sluice.plugins.base import KINDS, MissingExtra, Plugin, PluginError, PluginKind, Settings
from sluice.plugins.registry import Registry, registry

__all__ = ["KINDS", "MissingExtra", "Plugin", "PluginError", "PluginKind", "Registry", "Settings", "registry"]
