"""The contract of the plugin seam, checked for every registered plugin (built-in or installed).

A plugin's options are a ``Settings`` structure whose JSON Schema builds and documents every field;
its implementation loads as the seam's base type (when its driver modules are installed); names and
URL schemes are unique per kind; its summary is one non-empty line.
"""

from __future__ import annotations

import inspect
from collections import Counter

import msgspec
import pytest

from sluice.alerts.channels import Channel
from sluice.cdc.base import Apply, Capture
from sluice.connectors.base import Source
from sluice.destinations.base import Destination
from sluice.plugins import KINDS, Plugin, Settings, registry
from sluice.plugins.describe import property_doc
from sluice.plugins.schema import components
from sluice.transforms.engines import Engine

PLUGINS = registry().all()
BASES: dict[str, type] = {
    "source": Source,
    "destination": Destination,
    "engine": Engine,
    "capture": Capture,
    "apply": Apply,
    "alert": Channel,
}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda plugin: f"{plugin.kind}-{plugin.name}")
def test_options_are_documented_settings(plugin: Plugin) -> None:
    assert issubclass(plugin.options, Settings)
    assert plugin.options.__struct_config__.forbid_unknown_fields
    names, defs = components([plugin.options])
    definition = defs[names[0]]
    assert definition["type"] == "object" and definition["additionalProperties"] is False
    undocumented = [name for name, prop in definition.get("properties", {}).items() if not property_doc(prop, defs)]
    assert not undocumented, f"{plugin.label}: options without a description: {undocumented}"
    for field in msgspec.structs.fields(plugin.options):
        if field.default is not msgspec.NODEFAULT:
            msgspec.convert(msgspec.to_builtins(field.default), field.type)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda plugin: f"{plugin.kind}-{plugin.name}")
def test_target_loads_as_the_seam_base_type(plugin: Plugin) -> None:
    if plugin.missing_modules():
        pytest.skip(f"{plugin.label} needs {plugin.missing_modules()} (extra {plugin.extra})")
    target = plugin.load()
    base = BASES.get(plugin.kind)
    if base is not None:
        assert inspect.isclass(target) and issubclass(target, base), f"{plugin.label}: {target!r} is not a {base.__name__}"
        assert not inspect.isabstract(target), f"{plugin.label}: {target.__name__} leaves abstract methods"
    else:
        assert callable(target), f"{plugin.label}: {target!r} is not a factory"


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda plugin: f"{plugin.kind}-{plugin.name}")
def test_summary_and_declaration(plugin: Plugin) -> None:
    assert plugin.kind in KINDS
    assert plugin.summary.strip() and "\n" not in plugin.summary
    assert plugin.name and plugin.name == plugin.name.strip()
    assert ":" in plugin.target
    assert all(scheme == scheme.lower() and "://" not in scheme for scheme in plugin.schemes)
    if plugin.extra:
        assert plugin.modules, f"{plugin.label} names the extra {plugin.extra!r} but no driver modules"


def test_names_and_schemes_are_unique_per_kind() -> None:
    names = Counter((plugin.kind, plugin.name) for plugin in PLUGINS)
    schemes = Counter((plugin.kind, scheme) for plugin in PLUGINS for scheme in plugin.schemes)
    assert [key for key, count in names.items() if count > 1] == []
    assert [key for key, count in schemes.items() if count > 1] == []


def test_every_seam_has_plugins() -> None:
    assert {plugin.kind for plugin in PLUGINS} >= {"source", "destination", "lake", "engine", "bus", "state"}
