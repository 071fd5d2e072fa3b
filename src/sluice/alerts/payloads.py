"""What an alert looks like on each channel: plain text (email bodies, Slack's ``text``), Slack blocks, JSON.

>>> alert = Alert(trigger="run_failed", title="run r1 failed", project="demo", severity="error", run_id="r1", at=0.0)
>>> print(text(alert))
[ERROR] demo: run r1 failed
project: demo · run: r1
>>> as_json(alert)["type"], as_json(alert)["trigger"]
('sluice.alert', 'run_failed')

Every payload carries what failed (the title), where (project, object, run, logical date), the error and
the link to the run in the UI; a throttled alert adds how many repeats it folds ("and 7 more since ...").
Slack's message format (``text`` as the notification fallback, ``blocks`` for the layout) is documented at
https://api.slack.com/messaging/webhooks; Mattermost and Rocket.Chat accept the same payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluice.alerts.model import Alert

PAYLOAD_VERSION = 1


def when(epoch: float) -> str:
    """``epoch`` (seconds) as ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def where(alert: Alert) -> list[tuple[str, str]]:
    """The ``(label, value)`` pairs saying where it happened, those known only."""
    pairs = [("project", alert.project)]
    if alert.object_id is not None:
        name = f" {alert.object_name}" if alert.object_name else ""
        stage = f" ({alert.stage})" if alert.stage else ""
        pairs.append(("object", f"{alert.object_id}{name}{stage}"))
    if alert.run_id:
        pairs.append(("run", alert.run_id))
    if alert.logical_date:
        pairs.append(("logical date", alert.logical_date))
    if alert.schedule:
        pairs.append(("schedule", alert.schedule))
    if alert.criticality:
        pairs.append(("criticality", alert.criticality))
    return pairs


def folded(alert: Alert) -> str:
    """``and 7 more since 2026-11-30T21:00:00+00:00`` for a throttled alert, else ''."""
    if not alert.folded:
        return ""
    since = f" since {when(alert.folded_since)}" if alert.folded_since is not None else ""
    return f"and {alert.folded} more{since}"


def subject(alert: Alert) -> str:
    """One line: severity, project and what failed (an email's subject)."""
    return f"[{alert.severity.upper()}] {alert.project}: {alert.title}"


def text(alert: Alert) -> str:
    """The alert as plain text: the subject line, where, the error, the link, the folded repeats."""
    lines = [subject(alert), " · ".join(f"{label}: {value}" for label, value in where(alert))]
    if alert.error:
        lines.append(f"error: {alert.error}")
    for key, value in alert.details.items():
        lines.append(f"{key.replace('_', ' ')}: {value}")
    if alert.url:
        lines.append(f"run in the UI: {alert.url}")
    if alert.folded:
        lines.append(folded(alert))
    return "\n".join(lines)


def slack(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notifications, clients without blocks) and ``blocks``."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in where(alert)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject(alert)[:150]}},
        {"type": "section", "fields": fields[:10]},
    ]
    if alert.error:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{alert.error[:2900]}```"}})
    notes = [f"{key.replace('_', ' ')}: {value}" for key, value in alert.details.items()]
    if alert.folded:
        notes.append(folded(alert))
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(notes)[:2900]}]})
    if alert.url:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open the run"}, "url": alert.url}
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": text(alert), "blocks": blocks}


def as_json(alert: Alert) -> dict[str, Any]:
    """The generic webhook's body: every field of the alert, times as ISO 8601 (UTC)."""
    return {
        "type": "sluice.alert",
        "v": PAYLOAD_VERSION,
        "trigger": alert.trigger,
        "severity": alert.severity,
        "title": alert.title,
        "project": alert.project,
        "run_id": alert.run_id,
        "logical_date": alert.logical_date,
        "schedule": alert.schedule,
        "object_id": alert.object_id,
        "object_name": alert.object_name,
        "stage": alert.stage,
        "criticality": alert.criticality,
        "error": alert.error,
        "details": dict(alert.details),
        "url": alert.url,
        "at": when(alert.at),
        "rule": alert.rule,
        "folded": alert.folded,
        "folded_since": when(alert.folded_since) if alert.folded_since is not None else None,
        "text": text(alert),
    }
