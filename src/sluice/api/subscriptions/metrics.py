"""Prometheus metrics of live subscriptions (the process registry, ``GET /metrics`` of ``sluice serve``).

- ``sluice_api_subscriptions_active{table, role}``: subscriptions open now (WebSocket and SSE), by the table
  of their root field (its GraphQL type name) and the subscriber's role.
- ``sluice_api_subscription_pushes_total{table, role}``: results sent to subscribers (the first result and
  each changed one; a re-run whose result did not change sends nothing).
- ``sluice_api_subscription_runs_total{table, outcome}``: runs of a live query (``first``, ``changed``,
  ``same``, ``error``); one run serves every subscriber of the same document, variables, role and claims.
- ``sluice_api_subscription_change_messages_total{topic}`` and ``..._change_windows_total{topic}``: change
  messages read from a sync's topic, and the windows they were batched into (each window re-runs the live
  queries reading that table once).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ACTIVE = Gauge(
    "sluice_api_subscriptions_active", "Live subscriptions open, by table of the root field and role.", ["table", "role"]
)
PUSHES = Counter(
    "sluice_api_subscription_pushes_total", "Subscription results sent to subscribers, by table and role.", ["table", "role"]
)
RUNS = Counter(
    "sluice_api_subscription_runs_total",
    "Runs of live queries (first, changed, same, error), by table of the root field.",
    ["table", "outcome"],
)
CHANGE_MESSAGES = Counter(
    "sluice_api_subscription_change_messages_total", "Change messages read by the subscriptions' feeds, by topic.", ["topic"]
)
CHANGE_WINDOWS = Counter(
    "sluice_api_subscription_change_windows_total",
    "Batches of change messages (one re-run of the live queries of the table each), by topic.",
    ["topic"],
)
