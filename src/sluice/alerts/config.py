"""Reading ``alerts:`` from ``sluice.yaml``: every mapping checked at its own line, then what the file alone can
tell (channels a rule names exist, objects a rule or deadline names exist, durations, time zones).

>>> from sluice.project.yaml_tree import load_yaml
>>> tree = load_yaml("alerts:\\n  rules:\\n    - {on: run_faild, channels: [team]}\\n", "sluice.yaml")
>>> spec, problems = read_alerts(tree["alerts"], "sluice.yaml", tree.line_of("alerts"), {})
>>> for p in problems: print(p.message)
alerts: rule 1: unknown trigger 'run_faild'. Did you mean 'run_failed'? Triggers: object_failed, retries_exhausted, ...
alerts: rule 1: unknown channel 'team' (channels: none defined). Define it under alerts.channels
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from sluice.alerts.model import AlertsSpec, ChannelSpec, Rule, Sla
from sluice.alerts.settings import TRIGGERS, AlertsSettings, RuleSettings, SlaSettings
from sluice.errors import ConfigError, did_you_mean
from sluice.plugins import PluginError, Settings, registry
from sluice.plugins.options import convert_options, partial_settings
from sluice.project.model import ObjectSpec
from sluice.project.yaml_tree import YamlMap, duplicate_names, plain
from sluice.streaming.durations import parse_duration

S = TypeVar("S", bound=Settings)
EXAMPLE = "{channels: {team: {type: slack, url: ...}}, rules: [{on: object_failed, channels: [team]}]}"


class _Reader:
    def __init__(
        self, file: str, objects: Mapping[int, ObjectSpec], schedules: Sequence[str] | None, sensors: Sequence[str]
    ) -> None:
        self.file = file
        self.objects = objects
        self.schedules = schedules
        self.sensors = list(sensors)
        self.by_name = {obj.name: oid for oid, obj in objects.items()}
        self.problems: list[ConfigError] = []

    def problem(self, message: str, line: int | None) -> None:
        self.problems.append(ConfigError(f"alerts: {message}", self.file, line))

    def check(self, settings: type[S], item: YamlMap, label: str, ignore: tuple[str, ...] = (), what: str = "key") -> S | None:
        """``item`` as ``settings``, every problem recorded with its key's line; a key given twice is refused at the
        second one, as everywhere else in the file (YAML would keep the last one silently)."""
        for key, line in item.duplicates:
            self.problem(f"{label}{': ' if label else ''}key '{key}' is given twice; keep one", line)
        value, problems = convert_options(
            settings, item, label=f"alerts{': ' if label else ''}{label}", file=self.file, line=item.line,
            key_lines=item.key_lines, ignore=ignore, what=what,
        )  # fmt: skip
        self.problems.extend(problems)
        return value

    def read(self, raw: Any, line: int | None) -> AlertsSpec | None:
        if not isinstance(raw, YamlMap):
            self.problem(f"must be a mapping such as {EXAMPLE}, got {plain(raw)!r}", line)
            return None
        top = self.check(AlertsSettings, raw, "", ignore=("channels", "rules", "sla"))
        channels = self.channels(raw.get("channels"), raw.line_of("channels"))
        default_throttle = self.duration(top.throttle if top else "15m", "throttle", raw.line_of("throttle"))
        named = list(raw["channels"]) if isinstance(raw.get("channels"), YamlMap) else []  # those with problems too
        rules = self.rules(raw.get("rules"), raw.line_of("rules"), [str(n) for n in named], default_throttle)
        slas = self.slas(raw.get("sla"), raw.line_of("sla"))
        if top is None or self.problems:
            return None
        return AlertsSpec(channels, rules, slas, (top.ui_url or "").rstrip("/") or None, top.sla_interval_s)

    def items(self, raw: Any, key: str, line: int | None, example: str) -> list[YamlMap]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(f"'{key}' must be a list such as [{example}], got {plain(raw)!r}", line)
            return []
        found = []
        for item in raw:
            if isinstance(item, YamlMap):
                found.append(item)
            else:
                self.problem(f"each entry of '{key}' must be a mapping such as {example}, got {plain(item)!r}", line)
        return found

    def channels(self, raw: Any, line: int | None) -> dict[str, ChannelSpec]:
        if raw is None:
            return {}
        if not isinstance(raw, YamlMap):
            self.problem(f"'channels' must be a mapping of names to channels such as {EXAMPLE}", line)
            return {}
        for problem in duplicate_names(raw, "channel", self.file):
            self.problem(problem.message, problem.line)
        found: dict[str, ChannelSpec] = {}
        names = registry().names("alert")
        for name, item in raw.items():
            where = raw.line_of(name)
            label = f"channel '{name}'"
            if not isinstance(item, YamlMap):
                self.problem(f"{label} must be a mapping such as {{type: slack, url: https://hooks.slack.com/...}}", where)
                continue
            kind = item.get("type")
            if not isinstance(kind, str):
                self.problem(f"{label}: give its 'type' ({', '.join(names)})", item.line)
                continue
            try:
                plugin = registry().get("alert", kind)
            except PluginError as exc:
                self.problem(f"{label}: type: {exc.message}", item.line_of("type"))
                continue
            options = self.check(plugin.options, item, f"{label} ({kind})", ignore=("type",), what="option")
            ca_file = getattr(options, "ca_file", None)
            if options is not None and ca_file:  # relative to the project's folder
                options = msgspec.structs.replace(options, ca_file=str(Path(self.file).parent / Path(ca_file).expanduser()))
            if options is not None:
                found[str(name)] = ChannelSpec(str(name), kind, options)
        return found

    def duration(self, value: str | float | None, label: str, line: int | None) -> float:
        if value is None:
            return 0.0
        try:
            return parse_duration(value) / 1e6
        except ValueError as exc:
            self.problem(f"{label}: {exc}", line)
            return 0.0

    def object_ids(self, values: list[int | str], label: str, line: int | None) -> frozenset[int]:
        ids = set()
        for value in values:
            oid = value if isinstance(value, int) else self.by_name.get(value)
            if oid is None and isinstance(value, str) and value.isdigit():
                oid = int(value)
            if oid is None or oid not in self.objects:
                hint = did_you_mean(str(value), list(self.by_name)) if isinstance(value, str) else ""
                self.problem(f"{label}: unknown object {value!r}.{hint} Name an object id or name of the project", line)
                continue
            ids.add(oid)
        return frozenset(ids)

    def schedule_names(self, names: Sequence[str], label: str, line: int | None, *, sensors: bool = True) -> None:
        """A problem for each of ``names`` that is no schedule of the project (nor sensor, when ``sensors``); a
        backfill's runs (``backfill:<id>``) are named at run time, so always accepted."""
        if self.schedules is None:
            return
        known = [*self.schedules, *(self.sensors if sensors else [])]
        for name in names:
            if name in known or name.startswith("backfill:"):
                continue
            what = "schedules or sensors" if sensors else "schedules"
            listed = ", ".join(known) or "none defined"
            self.problem(
                f"{label}: unknown schedule {name!r} ({what}: {listed}).{did_you_mean(name, known)} "
                "Name one of them, or define it under schedules:",
                line,
            )

    def rules(self, raw: Any, line: int | None, channels: list[str], throttle: float) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        for index, item in enumerate(self.items(raw, "rules", line, "{on: object_failed, channels: [team]}"), start=1):
            label = f"rule {index}"
            _unquoted_on(item)
            spec = self.check(RuleSettings, item, label)
            valid = set(item)
            if spec is None:  # go on with the keys that are right, so every problem of the rule is reported
                spec, valid = partial_settings(RuleSettings, item, _RULE_PLACEHOLDER)
            on = [spec.on] if isinstance(spec.on, str) else spec.on
            for trigger in on:
                if trigger not in TRIGGERS:
                    hint = did_you_mean(trigger, TRIGGERS)
                    self.problem(
                        f"{label}: unknown trigger {trigger!r}.{hint} Triggers: {', '.join(TRIGGERS)}", item.line_of("on")
                    )
            for channel in spec.channels if "channels" in valid else ():
                if channel not in channels:
                    known = ", ".join(channels) or "none defined"
                    hint = did_you_mean(channel, channels)
                    message = f"{label}: unknown channel {channel!r} (channels: {known}).{hint} Define it under alerts.channels"
                    self.problem(message, item.line_of("channels"))
            self.schedule_names(spec.schedules, label, item.line_of("schedules"))
            criticality = [spec.criticality] if isinstance(spec.criticality, str) else spec.criticality or []
            rules.append(
                Rule(
                    index=index,
                    name=spec.name or label,
                    on=frozenset(on),
                    channels=tuple(spec.channels),
                    objects=self.object_ids(spec.objects, label, item.line_of("objects")),
                    tags=frozenset(spec.tags),
                    criticality=frozenset(criticality),
                    schedules=frozenset(spec.schedules),
                    severity=spec.severity,
                    throttle_s=throttle
                    if spec.throttle is None
                    else self.duration(spec.throttle, label, item.line_of("throttle")),
                    cont=spec.continue_,
                )
            )
        return tuple(rules)

    def slas(self, raw: Any, line: int | None) -> tuple[Sla, ...]:
        slas: list[Sla] = []
        example = "{schedule: nightly, finish_within: 2h}"
        for index, item in enumerate(self.items(raw, "sla", line, example), start=1):
            spec = self.check(SlaSettings, item, f"sla {index}")
            if spec is None:  # go on with the keys that are right, so every problem of the deadline is reported
                spec, _ = partial_settings(SlaSettings, item, {})
            label = f"sla {spec.name or index}"
            if (item.get("finish_within") is None) == (item.get("by") is None):
                self.problem(
                    f"{label}: give one of finish_within (2h: from the run's start) or by ('06:00': a time of day)", item.line
                )
            if spec.schedule is not None:
                self.schedule_names([spec.schedule], label, item.line_of("schedule"))
            if item.get("schedule") is None and not item.get("targets"):
                self.problem(f"{label}: say which runs it covers: schedule (a name) or targets (object ids or names)", item.line)
            clock, _, zone = (spec.by or "").strip().partition(" ")  # by: "06:00 Europe/Paris" names its zone too
            timezone = zone.strip() or spec.timezone
            if zone.strip() and "timezone" in item:
                self.problem(f"{label}: give the time zone once, in 'by' or in 'timezone'", item.line_of("timezone"))
            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.problem(
                    f"{label}: unknown time zone {timezone!r}; use an IANA name such as Europe/Paris",
                    item.line_of("by" if zone.strip() else "timezone"),
                )
            by = None
            if spec.by is not None:
                try:
                    by = time.fromisoformat(clock.zfill(5))
                except ValueError:
                    self.problem(
                        f"{label}: by: {spec.by!r} is not a time of day; write HH:MM such as '06:00'", item.line_of("by")
                    )
            within = (
                None if spec.finish_within is None else self.duration(spec.finish_within, label, item.line_of("finish_within"))
            )
            slas.append(
                Sla(
                    name=spec.name or f"sla {index}",
                    schedule=spec.schedule,
                    targets=self.object_ids(spec.targets, label, item.line_of("targets")),
                    within_s=within,
                    by=by,
                    timezone=timezone,
                )
            )
        return tuple(slas)


_RULE_PLACEHOLDER = {"on": [], "channels": ["-"]}
"""Stands for a rule's missing or wrong ``on`` and ``channels`` while its other keys are checked (never routed)."""


def _unquoted_on(item: YamlMap) -> None:
    """YAML 1.1 reads an unquoted ``on`` key as the boolean True (as in GitHub Actions files): take it as ``on``
    (an unquoted ``on`` given twice, or beside a quoted ``"on"``, is a key given twice)."""
    item.duplicates = [("on" if key == "True" else key, line) for key, line in item.duplicates]
    if True not in item:
        return
    line = item.key_lines.pop("True", item.line or 0)
    value = item.pop(True)
    if "on" in item:
        item.duplicates.append(("on", max(line, item.key_lines.get("on", 0))))
        if line < item.key_lines.get("on", 0):
            return
    item["on"] = value
    item.key_lines["on"] = line


def read_alerts(
    raw: Any,
    file: str,
    line: int | None,
    objects: Mapping[int, ObjectSpec],
    schedules: Sequence[str] | None = None,
    sensors: Sequence[str] = (),
) -> tuple[AlertsSpec | None, list[ConfigError]]:
    """The ``alerts:`` section ``raw`` (at ``line`` of ``file``) checked against the project's ``objects`` and the
    names of its ``schedules`` and ``sensors`` (None: schedule names are not checked): the spec (None when there
    are problems) and every problem found, each with its line."""
    reader = _Reader(file, objects, schedules, sensors)
    spec = reader.read(raw, line)
    return spec, reader.problems
