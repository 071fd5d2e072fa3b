"""Read the ``sensors:`` section of ``sluice.yaml`` into :class:`SensorSpec` values (docs/sensors.md): each
sensor's keys checked at their line, its ``sync`` among the project's syncs, its targets and tags among the
project's objects. Every problem of the section is reported at once: a wrong key does not hide the problems of the
sensor's other keys (:func:`~sluice.plugins.options.partial_settings`), nor one problem across keys the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from sluice.errors import ConfigError, did_you_mean
from sluice.plugins.options import partial_settings
from sluice.project.model import ObjectSpec, SyncSpec
from sluice.project.models import Checker
from sluice.project.yaml_tree import YamlMap, duplicate_names, plain
from sluice.scheduling.sensor_settings import SensorKeys, SensorSettings, SensorSpec, sensor_problems
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
        before = len(checker.problems)
        settings = checker.check(SensorKeys, body, label)
        valid: set[str] = {str(key) for key in body}
        if settings is None:  # go on with the keys that are right, so every problem of the sensor is reported
            settings, valid = partial_settings(SensorKeys, body, _PLACEHOLDER)
        for key, message in sensor_problems(settings, {str(key) for key in body} - valid):
            checker.problems.append(ConfigError(f"{label}: {message}", checker.file, body.line_of(key) if key else body.line))
        if "sync" in valid and settings.sync is not None and settings.sync not in sync_names:
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
        if len(checker.problems) == before:
            found.append(SensorSpec(str(name), SensorSettings(**msgspec.structs.asdict(settings)), targets))
    return tuple(found)


_PLACEHOLDER = {"type": "files"}
"""Stands for a sensor's missing or wrong ``type`` while its other keys are checked (never polled)."""


def sensor_targets(settings: SensorKeys, objects: Mapping[int, ObjectSpec]) -> tuple[int, ...] | None:
    """The object ids of ``targets`` (ids or names) or ``tags``; None for neither (the whole project). Raises
    ConfigError (the same selection as a schedule's, :func:`sluice.scheduling.spec.resolve_targets`)."""
    ids, problem = resolve_targets(objects, settings.targets, settings.tags)
    if problem is not None:
        raise ConfigError(problem)
    return ids
