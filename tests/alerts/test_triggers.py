"""Which events raise which alerts (triggers.py), with a real SQLite state store for the runs' details."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from sluice import events as ev
from sluice.alerts.triggers import Triggers
from sluice.project.model import ObjectSpec, Origin, Project, RetrySpec
from sluice.state.base import ObjectState, RunRecord
from sluice.state.sqlite import SqliteStateStore


@pytest.fixture
def triggers(tmp_path: Path) -> Triggers:
    objects = {
        oid: ObjectSpec(oid, f"obj{oid}", "ingest", (), Origin("sluice.yaml"), criticality="high" if oid == 1 else None)
        for oid in range(1, 9)
    }
    project = Project("p", tmp_path, tmp_path / "sluice.yaml", objects, {}, retry=RetrySpec(attempts=3))
    state = SqliteStateStore(tmp_path / "state.db")
    options = {"logical_date": "2026-11-30T00:00:00+00:00", "schedule": "daily", "trigger": "schedule"}
    failed = [dataclasses.replace(ObjectState(oid, "ingest"), status="failed", error=f"boom {oid}") for oid in range(2, 9)]
    state.create_run(RunRecord("r1", "p", "running", 0.0, options=options), [ObjectState(1, "ingest"), *failed])
    return Triggers(project, state, "http://ui:8000")


def failed(attempt: int, retryable: bool = True) -> ev.ObjectFailed:
    return ev.ObjectFailed(run_id="r1", object_id=2, stage="ingest", attempt=attempt, error="down", retryable=retryable)


def test_an_attempt_with_a_retry_left_raises_nothing(triggers: Triggers) -> None:
    assert triggers.alerts(failed(1)) == [] and triggers.alerts(failed(2)) == []


def test_an_outcome_published_twice_alerts_once(triggers: Triggers) -> None:
    assert len(triggers.alerts(failed(3))) == 2
    assert triggers.alerts(failed(3)) == []  # the same attempt's ObjectFailed again (a worker's at-least-once)
    missed = ev.ScheduleMissed(run_id="", schedule="s", logical_date="2026-11-30T00:00:00+00:00", reason="x")
    assert len(triggers.alerts(missed)) == 1 and triggers.alerts(missed) == []


def test_the_last_attempt_is_object_failed_and_retries_exhausted(triggers: Triggers) -> None:
    (failed_alert, subjects), (exhausted, _) = triggers.alerts(failed(3))
    assert (failed_alert.trigger, exhausted.trigger) == ("object_failed", "retries_exhausted")
    assert failed_alert.title == "object 2 obj2 failed after 3 attempts" and failed_alert.severity == "error"
    assert (failed_alert.logical_date, failed_alert.schedule, failed_alert.url) == (
        "2026-11-30T00:00:00+00:00",
        "daily",
        "http://ui:8000/?run=r1",
    )  # from the state store: this process never saw the run's RunStarted
    assert [s.object_id for s in subjects] == [2]


def test_a_terminal_error_is_object_failed_at_once_without_retries_exhausted(triggers: Triggers) -> None:
    ((alert, _),) = triggers.alerts(failed(1, retryable=False))
    assert alert.trigger == "object_failed" and alert.title == "object 2 obj2 failed after 1 attempt"
    assert alert.details == {"attempt": "1 of 3", "retryable": "no"} and alert.error == "down"
    typed = msgspec.structs.replace(
        failed(1, retryable=False), object_id=3, error_type="ValueError", error="ValueError: bad file"
    )
    assert triggers.alerts(typed)[0][0].error == "ValueError: bad file"  # the type once, not twice


def test_run_failed_names_its_failed_objects_and_only_failed_runs_alert(triggers: Triggers) -> None:
    assert triggers.alerts(ev.RunFinished(run_id="r0", status="succeeded", duration_s=1.0)) == []
    assert triggers.alerts(ev.RunFinished(run_id="r2", status="cancelled", duration_s=1.0)) == []
    ((alert, subjects),) = triggers.alerts(ev.RunFinished(run_id="r1", status="failed", duration_s=2.5, counts={"failed": 7}))
    assert alert.error.startswith("object 2 obj2: boom 2; object 3 obj3: boom 3;") and alert.error.endswith("(and 2 more)")
    assert [s.object_id for s in subjects] == [2, 3, 4, 5, 6, 7, 8]
    assert alert.details == {"duration_s": 2.5, "objects": "7 failed"} and alert.severity == "error"


def test_criticality_high_raises_the_default_severity(triggers: Triggers) -> None:
    event = ev.ObjectFailed(run_id="r1", object_id=1, stage="ingest", attempt=1, error="x", retryable=False)
    ((alert, _),) = triggers.alerts(event)
    assert alert.severity == "critical" and alert.criticality == "high"
    check = ev.CheckFinished(
        run_id="r1", object_id=1, stage="ingest", check="c", kind="unique", status="error", message="no table"
    )
    ((checked, _),) = triggers.alerts(check)
    assert checked.severity == "critical" and checked.title == "check c (unique) could not run on object 1 obj1"
    assert checked.error == "no table"


def test_a_failed_check_says_what_it_covered_and_how_many_rows(triggers: Triggers) -> None:
    check = ev.CheckFinished(
        run_id="r1",
        object_id=1,
        stage="ingest",
        check="c",
        kind="not_null",
        status="failed",
        failing_rows=2,
        covered="load",
        rows_checked=40,
    )
    ((alert, _),) = triggers.alerts(check)
    assert alert.details["covered"] == "load" and alert.details["rows_checked"] == 40
    older = ev.CheckFinished(run_id="r2", object_id=1, stage="ingest", check="c", kind="unique", status="failed")
    ((alert, _),) = triggers.alerts(older)  # an event written before the fields: it covered the table
    assert alert.details["covered"] == "table" and "rows_checked" not in alert.details


def test_run_failed_takes_its_failed_objects_from_the_event_before_the_store_has_them(triggers: Triggers) -> None:
    event = ev.RunFinished(run_id="r9", status="failed", duration_s=1.0, failed={1: "TerminalError: no such table"})
    ((alert, subjects),) = triggers.alerts(event)  # r9 is in no state store (its states are not saved yet)
    assert [s.object_id for s in subjects] == [1] and alert.severity == "critical"
    assert alert.error == "object 1 obj1: TerminalError: no such table"
    assert triggers.alerts(event) == []  # the same RunFinished again: once
