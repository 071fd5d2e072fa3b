"""Rules and throttling: which rules an alert matches, and whether it goes out now or is folded into the next.

>>> rule = Rule(index=1, name="rule 1", on=frozenset({"run_failed"}), channels=("team",), throttle_s=900.0)
>>> router = Router((rule,))
>>> alert = Alert(trigger="run_failed", title="run r1 failed", project="demo", severity="error")
>>> [a.folded for _, a in router.route(alert, [], now=0.0)], router.route(alert, [], now=60.0)
([0], [])
>>> [(a.folded, a.folded_since) for _, a in router.route(alert, [], now=1000.0)]
[(1, 60.0)]

Rules are tried in order and the first that matches wins, unless it says ``continue: true`` (then the next
ones are tried too): the routing tree of Prometheus Alertmanager, flattened to a list. Throttling is per
(rule, subject, trigger), where the subject is the object (and check), else the deadline, else the schedule: a repeat within
the rule's ``throttle`` is counted, and the next alert sent for that key says "and N more since ...". The alert
service keeps those counts in the state store (:class:`StoredThrottle`: one row per key, shared by every process
of the project, kept across restarts); :class:`Throttle` keeps them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sluice.alerts.model import Alert, Rule, Subject
from sluice.state.base import StateStore

ThrottleKey = tuple[int, str, str]


class Throttle:
    """Counts of repeats per key within each rule's window. Not thread-safe: one alert service thread uses it."""

    def __init__(self) -> None:
        self._sent: dict[ThrottleKey, float] = {}
        self._folded: dict[ThrottleKey, tuple[int, float]] = {}

    def admit(self, key: ThrottleKey, window_s: float, now: float) -> tuple[bool, int, float | None]:
        """``(send, folded, since)``: whether an alert for ``key`` goes out at ``now`` (epoch seconds), and when it
        does, how many repeats it folds and since when (the first of them)."""
        if window_s > 0:
            last = self._sent.get(key)
            if last is not None and now - last < window_s:
                count, since = self._folded.get(key, (0, now))
                self._folded[key] = (count + 1, since)
                return False, 0, None
        count, first = self._folded.pop(key, (0, 0.0))
        self._sent[key] = now
        self._forget(now)
        return True, count, first if count else None

    def _forget(self, now: float) -> None:
        """Drop keys not sent for a day with nothing folded (a long-lived process meets many objects and runs)."""
        if len(self._sent) < 10_000:
            return
        for key, last in list(self._sent.items()):
            if now - last > 86_400 and key not in self._folded:
                del self._sent[key]


class Admits(Protocol):
    """A throttle: whether an alert for ``key`` goes out now (see :meth:`Throttle.admit`)."""

    def admit(self, key: ThrottleKey, window_s: float, now: float) -> tuple[bool, int, float | None]: ...


class StoredThrottle:
    """:class:`Throttle`'s counts in the state store (``StateStore.claim_alert``), per project: two processes
    alerting for one project (two ``sluice serve``, a scheduler beside them) send a key's alert once per window
    between them, and a restart keeps the windows."""

    def __init__(self, state: StateStore, project: str) -> None:
        self.state = state
        self.project = project

    def admit(self, key: ThrottleKey, window_s: float, now: float) -> tuple[bool, int, float | None]:
        index, subject, trigger = key
        return self.state.claim_alert(self.project, f"rule {index}|{subject}|{trigger}", window_s, now)


def throttle_key(rule: Rule, alert: Alert) -> ThrottleKey:
    """The key repeats are counted under: the rule, the subject (object and check, else the deadline, else the
    schedule), the trigger."""
    if alert.object_id is not None:
        subject = f"object {alert.object_id}"
        check = alert.details.get("check")
        if check:
            subject += f" check {check}"
    elif alert.details.get("sla"):
        subject = f"sla {alert.details['sla']}"
    else:
        subject = f"schedule {alert.schedule or ''}"
    return rule.index, subject, alert.trigger


class Router:
    """Matches alerts against ``rules`` and throttles them (``throttle``: in memory by default)."""

    def __init__(self, rules: Sequence[Rule], throttle: Admits | None = None) -> None:
        self.rules = tuple(rules)
        self.throttle: Admits = throttle if throttle is not None else Throttle()
        self.held = 0
        """Alerts held back by a throttle so far."""

    def route(self, alert: Alert, subjects: Sequence[Subject], now: float) -> list[tuple[Rule, Alert]]:
        """``(rule, alert as that rule sends it)`` for each matching rule whose throttle lets it through now."""
        out: list[tuple[Rule, Alert]] = []
        for rule in self.rules:
            if not rule.matches(alert.trigger, subjects, alert.schedule):
                continue
            send, folded, since = self.throttle.admit(throttle_key(rule, alert), rule.throttle_s, now)
            if not send:
                self.held += 1
            else:
                out.append((rule, alert.routed(rule, rule.severity or alert.severity, folded, since)))
            if not rule.cont:
                break
        return out
