"""Open a project's lake through its plugin (``lake: {type: local, path: ...}``; local by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sluice.lake.base import Lake
from sluice.plugins import registry
from sluice.project.model import Project


def open_lake(project: Project) -> Lake:
    """The lake ``project`` names (its ``lake`` section). Raises PluginError or MissingExtra."""
    factory = cast(Callable[[Project], Lake], registry().get("lake", project.lake.kind).load())
    return factory(project)


def open_local(project: Project) -> Lake:
    """A :class:`~sluice.lake.local.LocalLake` in the project's lake folder (``Project.resolve_lake_path``)."""
    from sluice.lake.local import LocalLake

    return LocalLake(project.resolve_lake_path())
