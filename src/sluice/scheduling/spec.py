"""The ``schedules:`` section of ``sluice.yaml``: typed settings, checked with file and line, and the resolved spec.

.. code-block:: yaml

    schedules:
      nightly:
        cron: "0 2 * * *"          # croniter syntax, wall-clock time in `timezone`
        timezone: Europe/Paris     # IANA name (default UTC)
        targets: [3001, dim_users] # ids or names (their ancestors run with them); or tags: [...]; neither: all
        catch_up: latest           # none | latest | all: ticks missed while no scheduler ran (default latest)
        max_active_runs: 1         # a tick finding this many runs of the schedule still going is missed
        wait_for: [ingest]         # start once these schedules' runs of the same logical date succeeded
        enabled: true

Catch-up policies and ``max_active_runs`` follow Airflow's ``catchup`` / ``max_active_runs``; ``wait_for`` plays
the part of its ``ExternalTaskSensor`` on the same logical date (docs/schedules.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.errors import ConfigError
from sluice.plugins.base import Settings
from sluice.plugins.options import convert_options, partial_settings
from sluice.project.yaml_tree import YamlMap, duplicate_names, plain
from sluice.scheduling.cron import check_cron, check_timezone

CatchUp = Literal["none", "latest", "all"]
CATCH_UP: tuple[CatchUp, ...] = ("none", "latest", "all")


class ScheduleSettings(Settings):
    """One entry of ``schedules:``."""

    cron: Annotated[str, Meta(min_length=1, description="Cron expression (croniter), e.g. '0 2 * * *'.")]
    timezone: Annotated[str, Meta(description="IANA time zone of the cron's wall-clock times (default UTC).")] = "UTC"
    targets: Annotated[
        list[int | str] | None, Meta(description="Object ids or names to run (their ancestors run with them).")
    ] = None
    tags: Annotated[list[str] | None, Meta(description="Run the objects carrying any of these tags.")] = None
    catch_up: Annotated[
        CatchUp, Meta(description="After downtime: none (missed), latest (run the newest tick), all (run each).")
    ] = "latest"
    max_active_runs: Annotated[
        int, Meta(ge=1, description="Runs of the schedule at once; a tick finding this many going is missed.")
    ] = 1
    wait_for: Annotated[list[str], Meta(description="Schedules whose run of the same logical date must succeed first.")] = (
        msgspec.field(default_factory=list)
    )
    enabled: Annotated[bool, Meta(description="false: the scheduler ignores it (listed as disabled).")] = True


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A schedule, resolved: ``targets`` are object ids (None: the whole project)."""

    name: str
    cron: str
    timezone: str = "UTC"
    targets: tuple[int, ...] | None = None
    catch_up: CatchUp = "latest"
    max_active_runs: int = 1
    wait_for: tuple[str, ...] = ()
    enabled: bool = True
    file: str = ""
    line: int | None = None


def resolve_targets(
    objects: Mapping[int, Any], targets: list[int | str] | None, tags: list[str] | None
) -> tuple[tuple[int, ...] | None, str | None]:
    """``(ids, None)`` or ``(None, problem)``: the ids ``targets`` (ids or names) and ``tags`` select."""
    if targets is None and tags is None:
        return None, None
    by_name = {obj.name: oid for oid, obj in objects.items()}
    chosen: list[int] = []
    for target in targets or []:
        if isinstance(target, int) and target in objects:
            chosen.append(target)
        elif isinstance(target, str) and target in by_name:
            chosen.append(by_name[target])
        elif isinstance(target, str) and target.isdigit() and int(target) in objects:
            chosen.append(int(target))
        else:
            return None, f"target {target!r} is not an object id or name of the project"
    if tags is not None:
        wanted = set(tags)
        tagged = [oid for oid, obj in sorted(objects.items()) if wanted & set(obj.tags)]
        if not tagged:
            return None, f"no object carries any of the tags {sorted(wanted)}; add tags: [...] to objects"
        chosen.extend(tagged)
    return tuple(sorted(set(chosen))), None


def read_schedules(
    raw: Any, line: int | None, file: str, objects: Mapping[int, Any], problems: list[ConfigError]
) -> tuple[ScheduleSpec, ...]:
    """The ``schedules:`` mapping ``raw`` (at ``line`` of ``file``) as specs; problems go to ``problems``."""
    if raw is None:
        return ()
    if not isinstance(raw, YamlMap):
        problems.append(ConfigError(f"schedules must be a mapping of name: {{cron: ...}}, got {plain(raw)!r}", file, line))
        return ()
    problems.extend(duplicate_names(raw, "schedule", file))
    specs: list[ScheduleSpec] = []
    for name, entry in raw.items():
        where = raw.line_of(name)
        label = f"schedule '{name}'"
        if not isinstance(name, str):  # off: / on: / yes: are booleans in YAML
            problems.append(
                ConfigError(
                    f"schedule name {name!r} is not text (YAML reads off, on, yes, no and numbers unquoted as such); "
                    "quote the name as you wrote it, e.g. 'off':",
                    file,
                    where,
                )
            )
            continue
        if not isinstance(entry, YamlMap):
            problems.append(ConfigError(f"{label} must be a mapping such as {{cron: '0 2 * * *'}}", file, where))
            continue
        for key, key_line in entry.duplicates:
            problems.append(ConfigError(f"{label}: key '{key}' is given twice; keep one", file, key_line))
        settings, found = convert_options(
            ScheduleSettings, entry, label=label, file=file, line=entry.line, key_lines=entry.key_lines, what="key"
        )
        problems.extend(found)
        valid: set[str] = set(entry)
        if settings is None:  # go on with the keys that are right, so every problem of the section is reported at once
            settings, valid = partial_settings(ScheduleSettings, entry, _PLACEHOLDER)
        if "cron" in valid:
            problem = check_cron(settings.cron)
            if problem is not None:
                problems.append(ConfigError(f"{label}: {problem}", file, entry.line_of("cron")))
        problem = check_timezone(settings.timezone) if "timezone" in valid else None
        if problem is not None:
            problems.append(ConfigError(f"{label}: {problem}", file, entry.line_of("timezone")))
        targets, problem = resolve_targets(objects, settings.targets, settings.tags)
        if problem is not None:
            key = "targets" if "not an object" in problem else "tags"
            problems.append(ConfigError(f"{label}: {problem}", file, entry.line_of(key)))
        specs.append(
            ScheduleSpec(
                name=str(name),
                cron=settings.cron,
                timezone=settings.timezone,
                targets=targets,
                catch_up=settings.catch_up,
                max_active_runs=settings.max_active_runs,
                wait_for=tuple(settings.wait_for),
                enabled=settings.enabled,
                file=file,
                line=where,
            )
        )
    check_wait_for(specs, problems)
    return tuple(specs)


_PLACEHOLDER = {"cron": "0 0 * * *"}
"""Stands for a schedule's missing or wrong ``cron`` while its other keys are checked (never used to fire)."""


def check_wait_for(specs: list[ScheduleSpec], problems: list[ConfigError]) -> None:
    """Every ``wait_for`` names another schedule, and no schedule waits for itself through others."""
    names = {spec.name: spec for spec in specs}
    for spec in specs:
        for other in spec.wait_for:
            if other not in names or other == spec.name:
                choices = ", ".join(sorted(n for n in names if n != spec.name)) or "none"
                problems.append(
                    ConfigError(
                        f"schedule '{spec.name}': wait_for names '{other}', not another schedule (schedules: {choices})",
                        spec.file,
                        spec.line,
                    )
                )
    for spec in specs:  # cycles: follow wait_for from each schedule
        seen: set[str] = set()
        todo = list(spec.wait_for)
        while todo:
            name = todo.pop()
            if name == spec.name:
                problems.append(ConfigError(f"schedule '{spec.name}' waits for itself through wait_for", spec.file, spec.line))
                break
            if name in seen or name not in names:
                continue
            seen.add(name)
            todo.extend(names[name].wait_for)
