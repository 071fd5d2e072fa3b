"""Read the ``sensors:`` section of ``sluice.yaml`` into :class:`SensorSpec` values (docs/sensors.md): each
sensor's keys checked at their line, its ``sync`` among the project's syncs, its targets and tags among the
project's objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sluice.errors import ConfigError, did_you_mean
from sluice.project.model import ObjectSpec, SyncSpec
from sluice.project.models import Checker
from sluice.project.yaml_tree import YamlMap, duplicate_names, plain
from sluice.scheduling.sensor_settings import SensorSettings, SensorSpec
from sluice.scheduling.spec import resolve_targets


def read_sensors(
    checker: Checker, raw: Any, line: int | None, objects: Mapping[int, ObjectSpec], syncs: Sequence[SyncSpec]
) -> tuple[SensorSpec, ...]:
    """The checked sensors, in file order; problems go to ``checker.problems``."""
    if raw is None:
        return ()
    if not isinstance(raw, YamlMap):
        checker.problems.append(
            ConfigError(f"'sensors' must be a mapping of names to sensors, got {plain(raw)!r}", checker.file, line)
        )
        return ()
    checker.problems.extend(duplicate_names(raw, "sensor", checker.file))
    found = []
    sync_names = [s.settings.name for s in syncs]
    for name, body in raw.items():
        where = raw.line_of(name)
        label = f"sensor '{name}'"
        if not isinstance(body, YamlMap):
            checker.problems.append(
                ConfigError(f"{label} must be a mapping such as {{type: files, path: 'in/*.csv'}}", checker.file, where)
            )
            continue
        settings = checker.check(SensorSettings, body, label)
        if settings is None:
            continue
        if settings.sync is not None and settings.sync not in sync_names:
            known = ", ".join(sync_names) or "none defined"
            checker.problems.append(
                ConfigError(
                    f"{label}: no sync named {settings.sync!r} (syncs: {known}).{did_you_mean(settings.sync, sync_names)}",
                    checker.file,
                    body.line_of("sync"),
                )
            )
        try:
            targets = sensor_targets(settings, objects)
        except ConfigError as exc:
            checker.problems.append(ConfigError(f"{label}: {exc}", checker.file, body.line_of("targets") or body.line_of("tags")))
            continue
        found.append(SensorSpec(str(name), settings, targets))
    return tuple(found)


def sensor_targets(settings: SensorSettings, objects: Mapping[int, ObjectSpec]) -> tuple[int, ...] | None:
    """The object ids of ``targets`` (ids or names) or ``tags``; None for neither (the whole project). Raises
    ConfigError (the same selection as a schedule's, :func:`sluice.scheduling.spec.resolve_targets`)."""
    ids, problem = resolve_targets(objects, settings.targets, settings.tags)
    if problem is not None:
        raise ConfigError(problem)
    return ids
