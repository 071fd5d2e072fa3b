"""Prometheus metrics of the alert service (listed in docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import Counter

ALERTS_SENT = Counter(
    "sluice_alerts_sent_total",
    "Alerts handed to a channel, by channel and status (ok: delivered; failed: every attempt failed).",
    ["channel", "status"],
)
ALERTS_THROTTLED = Counter(
    "sluice_alerts_throttled_total",
    "Alerts held back by a rule's throttle (folded into the next alert of the same rule, subject and trigger), by trigger.",
    ["trigger"],
)
