"""The typed shape of ``sluice.yaml``'s ``alerts:`` section (docs/alerts.md).

>>> import msgspec
>>> rule = msgspec.convert({"on": "object_failed", "criticality": "high", "channels": ["oncall"]}, RuleSettings)
>>> rule.on, rule.criticality, rule.throttle
('object_failed', 'high', None)

Checked key by key with lines by :mod:`sluice.alerts.config`; a channel's options (everything but its
``type``) are its ``alert`` plugin's own structure (:mod:`sluice.alerts.plugins`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

TRIGGERS: tuple[str, ...] = (
    "object_failed",
    "retries_exhausted",
    "run_failed",
    "check_failed",
    "sla_missed",
    "schedule_missed",
)
"""What a rule can be ``on``: each is described in docs/alerts.md."""

SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")
Severity = Literal["critical", "error", "warning", "info"]
Criticality = Literal["low", "high"]


class RuleSettings(Settings):
    """One entry of ``alerts.rules``: which events, which filters, which channels."""

    on: Annotated[
        str | list[str],
        Meta(description="Trigger(s): object_failed, retries_exhausted, run_failed, check_failed, sla_missed, schedule_missed."),
    ]
    channels: Annotated[list[str], Meta(min_length=1, description="Names of channels (alerts.channels) the alert goes to.")]
    objects: Annotated[
        list[int | str], Meta(description="Only alerts about these objects (ids or names); default: any object.")
    ] = msgspec.field(default_factory=list)
    tags: Annotated[list[str], Meta(description="Only alerts about objects carrying one of these tags.")] = msgspec.field(
        default_factory=list
    )
    criticality: Annotated[
        Criticality | list[Criticality] | None,
        Meta(description="Only alerts about objects of this criticality (low, high; ObjectSpec.criticality)."),
    ] = None
    schedules: Annotated[
        list[str], Meta(description="Only alerts about runs of these schedules, sensors or backfills (and their misses).")
    ] = msgspec.field(default_factory=list)
    severity: Annotated[
        Severity | None,
        Meta(description="The alert's severity (critical, error, warning, info); default: from the event and criticality."),
    ] = None
    throttle: Annotated[
        str | float | None,
        Meta(description="Repeats of one (rule, subject, trigger) within this duration are folded into the next alert."),
    ] = None
    continue_: Annotated[
        bool, Meta(description="Keep matching the rules after this one (default: the first matching rule wins).")
    ] = msgspec.field(default=False, name="continue")
    name: Annotated[str | None, Meta(description="A name for the rule, shown in alerts (default: rule <n>).")] = None


class SlaSettings(Settings):
    """One entry of ``alerts.sla``: which runs must be finished by when."""

    name: Annotated[str | None, Meta(description="A name shown in the alert (default: sla <n>).")] = None
    schedule: Annotated[
        str | None, Meta(description="Runs started by this schedule, sensor or backfill (RunStarted.schedule).")
    ] = None
    targets: Annotated[list[int | str], Meta(description="Runs that plan any of these objects (ids or names).")] = msgspec.field(
        default_factory=list
    )
    finish_within: Annotated[
        str | float | None, Meta(description="A run must finish within this duration of its start (2h, 90m).")
    ] = None
    by: Annotated[
        str | None,
        Meta(
            description="A run of a logical date must finish by this time of day (HH:MM, or 'HH:MM Europe/Paris' with "
            "its time zone), the first one at or after its logical date.",
        ),
    ] = None
    timezone: Annotated[str, Meta(description="The time zone of 'by' (IANA name, e.g. Europe/Paris).")] = "UTC"


class AlertsSettings(Settings):
    """The ``alerts:`` section: channels by name, rules in order, SLA deadlines."""

    channels: Annotated[
        dict[str, dict[str, Any]],
        Meta(description="Channels by name: {type: email|slack|webhook, ...its options} (docs/alerts.md)."),
    ] = msgspec.field(default_factory=dict)
    rules: Annotated[list[RuleSettings], Meta(description="Rules in order; the first that matches an event wins.")] = (
        msgspec.field(default_factory=list)
    )
    sla: Annotated[list[SlaSettings], Meta(description="Deadlines for runs (finish_within or by).")] = msgspec.field(
        default_factory=list
    )
    ui_url: Annotated[
        str | None, Meta(description="The address of the web UI (sluice serve), for the link to a run in each alert.")
    ] = None
    throttle: Annotated[str | float, Meta(description="Default throttle of every rule (0 sends every alert).")] = "15m"
    sla_interval_s: Annotated[float, Meta(gt=0, description="Seconds between two checks of the running runs' deadlines.")] = 30.0
