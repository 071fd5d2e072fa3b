"""What the ``alerts:`` section becomes once checked, and the alert itself.

>>> rule = Rule(index=1, name="rule 1", on=frozenset({"object_failed"}), channels=("oncall",), criticality=frozenset({"high"}))
>>> rule.matches("object_failed", [Subject(1001, "orders", (), "high")], None)
True
>>> rule.matches("object_failed", [Subject(1002, "users", (), "low")], None)
False

No I/O: :mod:`sluice.alerts.config` builds these from ``sluice.yaml``, :mod:`sluice.alerts.service` uses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sluice.plugins.base import Settings


@dataclass(frozen=True, slots=True)
class Subject:
    """An object an alert is about, with what rules filter on."""

    object_id: int
    name: str
    tags: tuple[str, ...] = ()
    criticality: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel of ``alerts.channels``: its name, its plugin (``type``) and that plugin's checked options."""

    name: str
    type: str
    options: Settings


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: the triggers it answers (``on``) and the filters an alert must pass; every filter left empty
    matches everything. ``throttle_s``: seconds during which repeats are folded (0: none)."""

    index: int
    name: str
    on: frozenset[str]
    channels: tuple[str, ...]
    objects: frozenset[int] = frozenset()
    tags: frozenset[str] = frozenset()
    criticality: frozenset[str] = frozenset()
    schedules: frozenset[str] = frozenset()
    severity: str | None = None
    throttle_s: float = 900.0
    cont: bool = False

    def matches(self, trigger: str, subjects: Sequence[Subject], schedule: str | None) -> bool:
        """True when this rule answers ``trigger`` about ``subjects`` (the objects concerned; an alert about no
        object passes no object filter) for a run of ``schedule``."""
        if trigger not in self.on:
            return False
        if self.schedules and schedule not in self.schedules:
            return False
        if not (self.objects or self.tags or self.criticality):
            return True
        return any(self._takes(s) for s in subjects)

    def _takes(self, s: Subject) -> bool:
        if self.objects and s.object_id not in self.objects:
            return False
        if self.tags and not self.tags.intersection(s.tags):
            return False
        return not self.criticality or s.criticality in self.criticality


@dataclass(frozen=True, slots=True)
class Sla:
    """A deadline for runs: those of ``schedule`` or planning any of ``targets`` must finish within ``within_s``
    seconds of their start, or by ``by`` (time of day in ``timezone``) after their logical date."""

    name: str
    schedule: str | None = None
    targets: frozenset[int] = frozenset()
    within_s: float | None = None
    by: time | None = None
    timezone: str = "UTC"

    def applies(self, schedule: str | None, planned: Sequence[int]) -> bool:
        """True when a run of ``schedule`` planning ``planned`` falls under this deadline."""
        if self.schedule is not None and schedule != self.schedule:
            return False
        return not self.targets or bool(self.targets.intersection(planned))

    def deadline(self, started_at: float, logical_date: str | None) -> float | None:
        """The run's deadline (epoch seconds), or None (``by`` and a run without a logical date).

        ``by``: the first ``by`` o'clock in :attr:`timezone` at or after the logical date (a run of
        2026-11-30T02:00 with ``by: '06:00'`` is late after 06:00 that day; one of midnight too)."""
        if self.within_s is not None:
            return started_at + self.within_s
        if self.by is None or not logical_date:
            return None
        zone = ZoneInfo(self.timezone)
        local = datetime.fromisoformat(logical_date).astimezone(zone)
        due = datetime.combine(local.date(), self.by, tzinfo=zone)
        if due < local:
            due = datetime.combine(local.date() + timedelta(days=1), self.by, tzinfo=zone)
        return due.timestamp()


@dataclass(frozen=True, slots=True)
class AlertsSpec:
    """The checked ``alerts:`` section: channels by name, rules in order, deadlines, the UI's address."""

    channels: Mapping[str, ChannelSpec]
    rules: tuple[Rule, ...] = ()
    slas: tuple[Sla, ...] = ()
    ui_url: str | None = None
    sla_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as channels send it (docs/alerts.md, payloads).

    ``trigger`` is what happened (a rule's ``on``), ``title`` one line saying what failed, ``error`` the error
    or reason, ``url`` the run in the UI (None without ``alerts.ui_url``), ``at`` when (epoch seconds).
    ``folded`` counts repeats throttled since ``folded_since`` (epoch seconds) and folded into this one.
    """

    trigger: str
    title: str
    project: str
    severity: str
    error: str = ""
    run_id: str | None = None
    logical_date: str | None = None
    schedule: str | None = None
    object_id: int | None = None
    object_name: str | None = None
    stage: str | None = None
    criticality: str | None = None
    url: str | None = None
    at: float = 0.0
    rule: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    folded: int = 0
    folded_since: float | None = None

    def routed(self, rule: Rule, severity: str, folded: int, since: float | None) -> Alert:
        """This alert as ``rule`` sends it."""
        return replace(self, rule=rule.name, severity=severity, folded=folded, folded_since=since)
