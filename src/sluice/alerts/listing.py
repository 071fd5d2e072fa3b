"""What ``sluice alerts PATH list`` shows: the channels (where they send, no secrets), the rules in the order they
are tried, and the deadlines, as JSON-ready dicts and as lines.

>>> from sluice.alerts.model import AlertsSpec, Rule
>>> spec = AlertsSpec({}, (Rule(1, "rule 1", frozenset({"run_failed"}), ("team",), criticality=frozenset({"high"})),))
>>> print("\\n".join(lines(describe(spec))))
rule 1 'rule 1': on run_failed criticality=high -> team (throttle 900 s)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sluice.alerts.model import AlertsSpec, ChannelSpec, Rule, Sla

FILTERS = ("objects", "tags", "criticality", "schedules")


def destination(channel: ChannelSpec) -> str:
    """Where ``channel`` sends: an SMTP server and its recipients, or a webhook's scheme and host (its path may
    hold a secret, as a Slack webhook's does)."""
    o: Any = channel.options
    if channel.type == "email":
        return f"{o.host}:{o.port} ({o.security}) to {', '.join(o.to)}"
    url = urlsplit(str(getattr(o, "url", "")))
    return f"{url.scheme}://{url.netloc}/..." if url.netloc else channel.type


def rule_dict(rule: Rule) -> dict[str, Any]:
    filters = {key: sorted(getattr(rule, key)) for key in FILTERS if getattr(rule, key)}
    severity = {"severity": rule.severity} if rule.severity else {}
    return {"name": rule.name, "on": sorted(rule.on), "channels": list(rule.channels), **filters, **severity,
            "throttle_s": rule.throttle_s, "continue": rule.cont}  # fmt: skip


def sla_dict(sla: Sla) -> dict[str, Any]:
    found: dict[str, Any] = {"name": sla.name}
    if sla.schedule:
        found["schedule"] = sla.schedule
    if sla.targets:
        found["targets"] = sorted(sla.targets)
    if sla.within_s is not None:
        found["finish_within_s"] = sla.within_s
    if sla.by is not None:
        found.update(by=sla.by.strftime("%H:%M"), timezone=sla.timezone)
    return found


def describe(spec: AlertsSpec) -> dict[str, Any]:
    """``{"channels": [...], "rules": [...], "sla": [...], "ui_url": ...}``."""
    channels = [{"name": c.name, "type": c.type, "to": destination(c)} for c in spec.channels.values()]
    return {
        "channels": channels,
        "rules": [rule_dict(r) for r in spec.rules],
        "sla": [sla_dict(s) for s in spec.slas],
        "ui_url": spec.ui_url,
    }


def lines(described: dict[str, Any]) -> list[str]:
    """:func:`describe`'s dict as one line per channel, rule and deadline."""
    out = [f"channel {c['name']} ({c['type']}): {c['to']}" for c in described["channels"]]
    for n, r in enumerate(described["rules"], start=1):
        filters = "".join(f" {key}={','.join(map(str, r[key]))}" for key in FILTERS if key in r)
        more = (f" severity={r['severity']}" if "severity" in r else "") + (" continue" if r["continue"] else "")
        out.append(f"rule {n} {r['name']!r}: on {','.join(r['on'])}{filters} -> {','.join(r['channels'])} "
                   f"(throttle {r['throttle_s']:g} s){more}")  # fmt: skip
    for s in described["sla"]:
        runs = []
        if "schedule" in s:
            runs.append(f"schedule {s['schedule']}")
        if "targets" in s:
            runs.append(f"runs planning {s['targets']}")
        when = f"within {s['finish_within_s']:g} s of their start" if "finish_within_s" in s else f"by {s['by']} {s['timezone']}"
        out.append(f"sla {s['name']!r}: {' and '.join(runs)} finished {when}")
    return out
