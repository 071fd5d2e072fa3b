"""Run an object's checks on its written output, where it is; results, ``CheckFinished`` events, metrics.

Called by the stage worker after the object's output is written (lake committed, destination loaded) and before
``ObjectLoaded`` is published (:mod:`sluice.runtime.worker`), and by ``sluice check``. A failed (or broken) check of
severity ``error`` makes the object fail, terminally: its children are skipped; the output stays written (the
check guards the children, not the write). ``warn`` records and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice import events as ev
from sluice.checks.builtin import Counted
from sluice.checks.compile import batch_query, check_query, read_result, sample_query, sample_texts
from sluice.checks.places import Fetch, LoadScope, Place, find_object, where
from sluice.checks.settings import CheckSpec, ExpressionOptions, RelationshipsOptions
from sluice.checks.store import save_results
from sluice.errors import TerminalError, did_you_mean
from sluice.lake.base import Lake
from sluice.observability import metrics
from sluice.plugins.registry import registry
from sluice.project.model import ObjectSpec, Project
from sluice.state.base import CheckResult, StateStore

log = logging.getLogger("sluice.checks")


class CheckFailed(TerminalError):
    """A check of severity ``error`` failed (or could not run): the object fails and its children are skipped."""


class LoadRefused(CheckFailed):
    """An ``error`` check run inside a load's transaction failed: the load is rolled back (``checked``: the results)."""

    def __init__(self, checked: Checked) -> None:
        super().__init__(checked.failure)
        self.checked = checked


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
                covered=r.covered,
                rows_checked=r.rows_checked,
            )
            for r in self.results
        ]


class CheckRunner:
    """Runs objects' checks for one project. Thread-safe: each call opens its own place.

    ``batch``: the checks that can share a scan (``not_null``, ``accepted_values``, ``expression``, ``row_count``,
    ``freshness``: :class:`~sluice.checks.builtin.CheckType` ``aggregate``) are counted by one query over the
    output, and only those that failed are asked for their sample; the others run one query each.
    """

    def __init__(self, project: Project, lake: Lake, state: StateStore | None = None, *, batch: bool = True) -> None:
        self.project = project
        self.lake = lake
        self.state = state
        self.batch = batch

    def run(
        self,
        obj: ObjectSpec,
        run_id: str,
        location: str | None = None,
        *,
        store: bool = True,
        run_outputs: Mapping[int, str] | None = None,
        fetch: Fetch | None = None,
        load: LoadScope | None = None,
    ) -> Checked:
        """Run ``obj``'s checks on its output (``location``: the lake location just written; None: its current one).
        ``run_outputs``: this run's parents' lake locations (object id -> location), read by ``relationships``.
        ``fetch``: for an output in PostgreSQL, where to run the queries instead of a connection of their own (inside
        the load's transaction: :meth:`~sluice.destinations.postgres.PostgresDestination.fetch`). ``load``: the rows
        of the load being checked, which checks with ``rows: load`` look at (None: they cover the whole output); each
        result says what it covered and how many rows that was (``covered``, ``rows_checked``).

        Raises TransientError when the place cannot be reached (the object is retried), TerminalError when its
        output cannot be checked at all.
        """
        checked = Checked()
        if not obj.checks:
            return checked
        found = where(self.project, obj)
        if isinstance(found, str):
            raise TerminalError(f"object {obj.id} ({obj.name}): its checks cannot run: {found}")
        place = Place(self.project, self.lake, obj, found, location, run_outputs=dict(run_outputs or {}), fetch=fetch, load=load)
        try:
            place.open()
            types = {spec.name: registry().get("check", spec.kind).load() for spec in obj.checks}
            scoped = {spec.name: place.scoped(spec.rows) for spec in obj.checks}
            sizes = _Sizes(place)
            columns: dict[str, list[str]] = {}
            missing = {
                spec.name: problem
                for spec in obj.checks
                if (problem := missing_column(scoped[spec.name][0], obj, spec, columns)) is not None
            }
            counted: dict[str, tuple[int, float]] = {}
            if self.batch:
                runnable = tuple(spec for spec in obj.checks if spec.name not in missing)
                for group in _groups(runnable, scoped):
                    counted |= self._batched(group[0][0], [spec for _, spec in group], types, sizes)
            # Inside a PostgreSQL load each check runs in a savepoint of its own, and one that cannot run is rolled
            # back to it; its queries cannot abort the load's transaction (each runs in a subtransaction:
            # PostgresDestination.fetch), so a warn check never loses the load.
            in_load = place.fetch is not None and place.place == "postgres"
            for spec in obj.checks:
                context, covered = scoped[spec.name]
                if in_load:
                    place.query("SAVEPOINT sluice_check")
                result = self._one(context, obj, spec, run_id, types[spec.name], counted.get(spec.name), missing.get(spec.name))
                result.covered, result.rows_checked = covered, sizes.of(context)
                if in_load:
                    place.query(f"{'ROLLBACK TO' if result.status == 'error' else 'RELEASE'} SAVEPOINT sluice_check")
                checked.results.append(result)
        finally:
            place.close()
        if store:
            checked.stored = save_results(self.project, self.state, checked.results)
        broken = [r for r in checked.results if r.severity == "error" and r.status != "passed"]
        if broken:
            checked.failure = f"object {obj.id} ({obj.name}): " + "; ".join(describe(r) for r in broken)
        return checked

    def _batched(
        self, place: Place, specs: list[CheckSpec], types: dict[str, Any], sizes: _Sizes
    ) -> dict[str, tuple[int, float]]:
        """Failing rows of every check that has an aggregate, from one scan of ``place.this``, with each one's share
        of its time (the scan also counts the rows, kept in ``sizes``); {} when fewer than two can share it or the
        scan fails (each check then runs alone and reports its error)."""
        aggregates: dict[str, str] = {}
        for spec in specs:
            aggregate = getattr(types[spec.name], "aggregate", None)
            try:
                if aggregate is not None:
                    aggregates[spec.name] = aggregate(spec.options, place)
            except Exception:  # noqa: S112 - it runs alone then, and reports its own error
                continue
        if len(aggregates) < 2:
            return {}
        started = time.perf_counter()
        try:
            _, rows = place.query(batch_query([*aggregates.values(), "COUNT(*)"], place.this, place.place))
        except Exception as exc:
            log.info("the batched checks fell back to one query each: %s", " ".join(str(exc).split())[:300])
            return {}
        share = (time.perf_counter() - started) / len(aggregates)
        sizes.known[place.this] = int(rows[0][len(aggregates)] or 0)
        return {name: (int(rows[0][i] or 0), share) for i, name in enumerate(aggregates)}

    def _one(
        self,
        place: Place,
        obj: ObjectSpec,
        spec: CheckSpec,
        run_id: str,
        kind: Any,
        counted: tuple[int, float] | None,
        missing: str | None = None,
    ) -> CheckResult:
        """One check's result; ``missing``: a column it names is not in the output (said so, its SQL not run)."""
        started = time.perf_counter()
        status, failing, message = "passed", 0, ""
        sample: list[str] = []
        try:
            if missing is not None:
                status, message = "error", missing
            else:
                failing, sample = self._evaluate(place, spec, kind, None if counted is None else counted[0])
                status = "failed" if failing else "passed"
        except Exception as exc:  # a check that cannot run is a result (status error), not a crash
            status = "error"
            message = missing_column(place, obj, spec) or " ".join(str(exc).split())[:500] or type(exc).__name__
        duration = time.perf_counter() - started + (counted[1] if counted is not None else 0.0)
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

    def _evaluate(self, place: Place, spec: CheckSpec, kind: Any, counted: int | None) -> tuple[int, list[str]]:
        """(failing rows, sample): one query (count and sample), or with ``counted`` (from the batch) the sample alone."""
        if counted == 0 or (counted is not None and spec.sample == 0):
            return counted, []
        failing_sql = kind(spec.options, place)
        if isinstance(failing_sql, Counted):
            return failing_sql.failing_rows, failing_sql.sample[: spec.sample]
        if counted is not None:
            columns, rows = place.query(sample_query(failing_sql, spec.sample, place.place))
            return counted, sample_texts(columns, rows, spec.sample)
        columns, rows = place.query(check_query(failing_sql, spec.sample, place.place))
        return read_result(columns, rows, spec.sample)


def _groups(specs: tuple[CheckSpec, ...], scoped: Mapping[str, tuple[Place, str]]) -> list[list[tuple[Place, CheckSpec]]]:
    """The checks by the relation they look at (``this``), in declaration order: each group can share one scan."""
    groups: dict[str, list[tuple[Place, CheckSpec]]] = {}
    for spec in specs:
        context = scoped[spec.name][0]
        groups.setdefault(context.this, []).append((context, spec))
    return list(groups.values())


class _Sizes:
    """How many rows each relation a check looked at holds: known from the load, from a shared scan, or counted
    once (``SELECT count(*)``) when no scan of the object's checks counted it."""

    def __init__(self, place: Place) -> None:
        self.known: dict[str, int] = {}
        if place.load is not None and place.load.rows is not None:
            self.known[place.load.relation or place.this] = place.load.rows

    def of(self, context: Place) -> int | None:
        """The rows of ``context.this``; None when they cannot be counted."""
        if context.this not in self.known:
            try:
                self.known[context.this] = int(context.query(f"SELECT count(*) FROM {context.this}")[1][0][0])
            except Exception:  # the place is broken: the checks' own results say so
                return None
        return self.known[context.this]


def missing_column(place: Place, obj: ObjectSpec, spec: CheckSpec, known: dict[str, list[str]] | None = None) -> str | None:
    """The first column ``spec`` names that the checked output (or, for ``relationships``, the referenced output)
    does not have, said in one line, or None (none missing, or they cannot be told: the engine's error stands).

    Asked before the checks run (their SQL is not run then: inside a PostgreSQL load it would only fail), and again
    after a check failed to run. ``known``: columns already read, by relation (filled here).
    ``sluice validate`` finds these when the object's columns can be told from its definition
    (:mod:`sluice.checks.validate`); this covers the others, once the output exists.
    """
    from sluice.checks.validate import checked_columns, expression_columns

    options = spec.options
    named = expression_columns(options.expression) if isinstance(options, ExpressionOptions) else checked_columns(options)
    try:
        wanted = [(place.this, f"object {obj.id} ({obj.name})", named)]
        if isinstance(options, RelationshipsOptions):
            other = find_object(place.project, options.to)
            label = f"object {other.id} ({other.name}), which relationships refers to" if other else str(options.to)
            wanted.append((place.ref(options.to), label, [options.field or options.column]))
        for table, label, names in wanted:
            if not names:
                continue
            columns = known[table] if known is not None and table in known else place.columns(table)
            if known is not None:
                known[table] = columns
            lower = {column.lower() for column in columns}
            for name in names:
                if name.lower() not in lower:
                    return (
                        f"column {name!r} is not in the output of {label} (its columns: {', '.join(columns)})."
                        f"{did_you_mean(name, columns)} Fix the check's column, or select it in the object's SQL"
                    )
    except Exception:  # the place itself is broken: the engine's error stands
        return None
    return None


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


def coverage(result: CheckResult) -> str:
    """What a result looked at, for a line: ``covered: load, 12 rows`` (``covered: table`` when the rows are not known)."""
    rows = "" if result.rows_checked is None else f", {result.rows_checked} row{'s' if result.rows_checked != 1 else ''}"
    return f"covered: {result.covered}{rows}"


RESULT_STATUSES = ("passed", "failed", "error")


def register_series(project: Project) -> None:
    """Create the series of every declared check at zero: ``sluice_check_runs_total`` one per result status,
    ``sluice_check_duration_seconds`` one per check type.

    Called when a process that runs checks starts (``ObjectExecutor``): a counter's (or a histogram's) first sample
    has no increase for Prometheus, so a series born at 1 on a check's first failure would show no failure on the
    data-quality dashboard's ``increase()`` and ``rate()`` panels; born at 0 beforehand, that failure counts
    (docs/monitoring.md: the code that owns a labelled counter creates its label sets at zero).
    """
    for obj in project.objects.values():
        for spec in obj.checks:
            metrics.child(metrics.CHECK_DURATION, project.name, spec.kind)
            for status in RESULT_STATUSES:
                metrics.child(metrics.CHECK_RUNS, project.name, obj.name, spec.name, spec.kind, spec.severity, status)
