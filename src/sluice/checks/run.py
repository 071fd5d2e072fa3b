"""Run an object's checks on its written output, where it is; results, ``CheckFinished`` events, metrics.

Called by the stage worker after the object's output is written (lake committed, destination loaded) and before
``ObjectLoaded`` is published (:mod:`sluice.runtime.worker`), and by ``sluice check``. A failed (or broken) check of
severity ``error`` makes the object fail, terminally: its children are skipped; the output stays written (the
check guards the children, not the write). ``warn`` records and goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sluice import events as ev
from sluice.checks.builtin import Counted
from sluice.checks.compile import check_query, read_result
from sluice.checks.places import Place, where
from sluice.checks.settings import CheckSpec
from sluice.checks.store import save_results
from sluice.errors import TerminalError
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.plugins.registry import registry
from sluice.project.model import ObjectSpec, Project
from sluice.state.base import CheckResult, StateStore

log = logging.getLogger("sluice.checks")


class CheckFailed(TerminalError):
    """A check of severity ``error`` failed (or could not run): the object fails and its children are skipped."""


@dataclass(slots=True)
class Checked:
    """An object's check results, and the message of the object's failure when an ``error`` check did not pass."""

    results: list[CheckResult] = field(default_factory=list)
    failure: str = ""
    stored: str = ""

    def events(self, ready: ev.ObjectReady, worker: str = "") -> list[ev.CheckFinished]:
        """One ``CheckFinished`` per result, for the object attempt ``ready``."""
        return [
            ev.CheckFinished(
                run_id=ready.run_id,
                object_id=ready.object_id,
                stage=ready.stage,
                attempt=ready.attempt,
                check=r.check,
                kind=r.kind,
                severity=r.severity,
                status=r.status,
                failing_rows=r.failing_rows,
                sample=r.sample,
                message=r.message,
                duration_s=r.duration_s,
            )
            for r in self.results
        ]


class CheckRunner:
    """Runs objects' checks for one project. Thread-safe: each call opens its own place."""

    def __init__(self, project: Project, lake: Lake, state: StateStore | None = None) -> None:
        self.project = project
        self.lake = lake
        self.state = state

    def run(self, obj: ObjectSpec, run_id: str, location: str | None = None, *, store: bool = True) -> Checked:
        """Run ``obj``'s checks on its output (``location``: the lake location just written; None: its current one).

        Raises TransientError when the place cannot be reached (the object is retried), TerminalError when its
        output cannot be checked at all.
        """
        checked = Checked()
        if not obj.checks:
            return checked
        found = where(self.project, obj)
        if isinstance(found, str):
            raise TerminalError(f"object {obj.id} ({obj.name}): its checks cannot run: {found}")
        place = Place(self.project, self.lake, obj, found, location)
        try:
            place.open()
            for spec in obj.checks:
                checked.results.append(self._one(place, obj, spec, run_id))
        finally:
            place.close()
        if store:
            checked.stored = save_results(self.project, self.state, checked.results)
        broken = [r for r in checked.results if r.severity == "error" and r.status != "passed"]
        if broken:
            checked.failure = f"object {obj.id} ({obj.name}): " + "; ".join(describe(r) for r in broken)
        return checked

    def _one(self, place: Place, obj: ObjectSpec, spec: CheckSpec, run_id: str) -> CheckResult:
        started = time.perf_counter()
        status, failing, message = "passed", 0, ""
        sample: list[str] = []
        try:
            failing, sample = self._evaluate(place, spec)
            status = "failed" if failing else "passed"
        except Exception as exc:  # a check that cannot run is a result (status error), not a crash
            status, message = "error", " ".join(str(exc).split())[:500] or type(exc).__name__
        duration = time.perf_counter() - started
        result = CheckResult(
            run_id=run_id,
            project=self.project.name,
            object_id=obj.id,
            object=obj.name,
            check=spec.name,
            kind=spec.kind,
            severity=spec.severity,
            status=status,
            failing_rows=failing,
            sample=sample,
            message=message or summary(spec, status, failing),
            duration_s=duration,
            checked_at=time.time(),
        )
        labels = (self.project.name, obj.name, spec.name)
        metrics.child(metrics.CHECK_RUNS, *labels, spec.kind, spec.severity, status).inc()
        metrics.child(metrics.CHECK_FAILING_ROWS, *labels).set(failing)
        metrics.child(metrics.CHECK_DURATION, self.project.name, spec.kind).observe(duration)
        log.info("%s", describe(result), extra={"run_id": run_id, "object_id": obj.id})
        return result

    def _evaluate(self, place: Place, spec: CheckSpec) -> tuple[int, list[str]]:
        implementation: Any = registry().get("check", spec.kind).load()
        failing_sql = implementation(spec.options, place)
        if isinstance(failing_sql, Counted):
            return failing_sql.failing_rows, failing_sql.sample[: spec.sample]
        columns, rows = place.query(check_query(failing_sql, spec.sample, place.place))
        return read_result(columns, rows, spec.sample)


def summary(spec: CheckSpec, status: str, failing: int) -> str:
    """``3 failing rows`` / ``passed``: a result's message when the check gave none."""
    if status == "passed":
        return "passed"
    return f"{failing} failing row{'s' if failing != 1 else ''}"


def describe(result: CheckResult) -> str:
    """One line: ``check not_null_user_id (not_null, error): failed, 3 failing rows, e.g. user_id=None, ...``."""
    text = f"check {result.check} ({result.kind}, {result.severity}): {result.status}"
    if result.status == "error":
        return f"{text}: {result.message}"
    if result.status == "failed":
        text += f", {result.failing_rows} failing row{'s' if result.failing_rows != 1 else ''}"
        if result.sample:
            text += f", e.g. {'; '.join(result.sample)}"
    return text
