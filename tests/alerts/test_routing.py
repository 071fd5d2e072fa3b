"""Rules in order (first match wins unless ``continue``), each filter, and throttling windows with a fake clock."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from sluice.alerts import config, listing, model, payloads, routing, settings
from sluice.alerts.model import Alert, Rule, Subject
from sluice.alerts.routing import Router, Throttle

HIGH = Subject(1002, "payments", ("finance",), "high")
LOW = Subject(1001, "orders", ("sales",), "low")
PLAIN = Subject(1003, "users")


def alert(trigger: str = "object_failed", schedule: str | None = None, object_id: int | None = 1002) -> Alert:
    return Alert(trigger=trigger, title="t", project="p", severity="error", schedule=schedule, object_id=object_id)


def rule(index: int, **fields: object) -> Rule:
    values: dict[str, object] = {"on": frozenset({"object_failed"}), "channels": (f"c{index}",), "throttle_s": 0.0}
    values.update(fields)
    return Rule(index=index, name=f"rule {index}", **values)  # type: ignore[arg-type]


def channels(router: Router, a: Alert, subjects: list[Subject]) -> list[str]:
    return [c for r, _ in router.route(a, subjects, now=0.0) for c in r.channels]


def test_criticality_picks_the_channel_and_a_rule_without_filters_is_the_default() -> None:
    router = Router([rule(1, criticality=frozenset({"high"}), severity="critical"), rule(2)])
    assert channels(router, alert(), [HIGH]) == ["c1"]
    assert channels(router, alert(), [LOW]) == ["c2"]
    assert channels(router, alert(), [PLAIN]) == ["c2"]  # no criticality: not "high"
    ((_, sent),) = router.route(alert(), [HIGH], now=0.0)
    assert sent.severity == "critical" and sent.rule == "rule 1"


def test_continue_lets_the_next_rules_match_too() -> None:
    router = Router([rule(1, criticality=frozenset({"high"}), cont=True), rule(2, tags=frozenset({"sales"})), rule(3)])
    assert channels(router, alert(), [HIGH]) == ["c1", "c3"]
    assert channels(router, alert(), [LOW]) == ["c2"]


def test_filters_objects_tags_schedules_and_triggers() -> None:
    router = Router([rule(1, objects=frozenset({1001}), on=frozenset({"run_failed"})), rule(2, schedules=frozenset({"nightly"}))])
    assert channels(router, alert("run_failed"), [HIGH, LOW]) == ["c1"]  # a run alert matches through any failed object
    assert channels(router, alert("run_failed"), [HIGH]) == []
    assert channels(router, alert(schedule="nightly"), [HIGH]) == ["c2"]
    assert channels(router, alert(schedule="hourly"), [HIGH]) == []
    assert channels(router, alert("check_failed", schedule="nightly"), [HIGH]) == []
    no_object = Router([rule(1, tags=frozenset({"finance"}), on=frozenset({"schedule_missed"}))])
    assert channels(no_object, alert("schedule_missed", object_id=None), []) == []  # object filters need an object


def test_throttle_counts_repeats_per_key_and_folds_them_into_the_next() -> None:
    throttle = Throttle()
    key = (1, "object 1002", "object_failed")
    assert throttle.admit(key, 900.0, now=0.0) == (True, 0, None)
    assert throttle.admit(key, 900.0, now=100.0) == (False, 0, None)
    assert throttle.admit((2, "object 1002", "object_failed"), 900.0, now=100.0) == (True, 0, None)
    assert throttle.admit(key, 900.0, now=899.0) == (False, 0, None)
    assert throttle.admit(key, 900.0, now=900.0) == (True, 2, 100.0)  # the window starts at the last alert sent
    assert throttle.admit(key, 900.0, now=901.0) == (False, 0, None)
    assert throttle.admit(key, 0.0, now=902.0) == (True, 1, 901.0)  # no window: every alert goes out


def test_held_alerts_are_counted_by_the_router() -> None:
    router = Router([rule(1, throttle_s=60.0)])
    assert len(router.route(alert(), [HIGH], now=0.0)) == 1
    assert router.route(alert(), [HIGH], now=30.0) == [] and router.held == 1
    ((_, sent),) = router.route(alert(), [HIGH], now=61.0)
    assert (sent.folded, sent.folded_since) == (1, 30.0)


@pytest.mark.parametrize("module", [config, listing, model, payloads, routing, settings], ids=lambda m: m.__name__)
def test_examples_in_docstrings(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
