"""A run's logical date in an object's ``sql:`` and string source options: ``{{ ds }}`` and friends (Airflow's names).

The variables (https://airflow.apache.org/docs/apache-airflow/stable/templates-ref.html), each in the run's
**time zone** (a schedule's ``timezone:``, a backfill's ``--timezone`` or its schedule's, a sensor's
``timezone:``; UTC otherwise), as Dagster's partitions and dbt users count days:

- ``logical_date``: the run's logical date, a timezone-aware ``datetime`` in that zone (renders as ISO text with
  its offset, ``2026-03-10 00:30:00+01:00``: the same instant as the UTC one the run records;
  ``{{ logical_date.strftime('%Y/%m') }}`` works);
- ``ds``: ``YYYY-MM-DD`` of the logical date in that zone (a 00:30 Europe/Paris tick is that day, not the UTC
  day before), ``ds_nodash``: ``YYYYMMDD``;
- ``ts``: the logical date as the run records it, UTC ISO text (``2026-03-09T23:30:00+00:00``);
- ``data_interval_start`` / ``data_interval_end``: for a schedule's run (and a backfill of a schedule), the
  previous tick and this tick, so consecutive runs cover time without gaps or overlaps; for any other run (manual,
  backfill of days, sensor) both are the logical date, as in Airflow's manual runs.

What a run renders with comes from its options (:class:`~sluice.runtime.summary.RunOptions`, kept in its record):
``logical_date``, ``schedule``, ``timezone`` and ``data_interval_start``; a run recorded before those existed
takes the zone and interval of the project's schedule it names.

A run without a logical date (``sluice run``) renders with the time it is planned (the coordinator) and the time
each object starts (the workers): ``{{ ds }}`` is then today's date, in UTC.

An unknown variable is a ConfigError naming the object, its file and line (Jinja's ``StrictUndefined``); Jinja
runs sandboxed. Only text holding ``{{`` or ``{%`` is rendered; an object without any is returned as it is. The
rendered text is part of the object's definition, so its fingerprint changes with the date: a run for another
date is never "fresh" because the previous date's was.

>>> from datetime import UTC, datetime
>>> render_text("SELECT * FROM t WHERE dt = '{{ ds }}'", template_context(datetime(2026, 1, 2, 2, tzinfo=UTC)))
"SELECT * FROM t WHERE dt = '2026-01-02'"
>>> template_context(datetime(2026, 3, 9, 23, 30, tzinfo=UTC), zone="Europe/Paris")["ds"]
'2026-03-10'
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import msgspec
from jinja2.sandbox import SandboxedEnvironment

from sluice.errors import ConfigError
from sluice.project.model import ObjectSpec, Project, SourceSpec
from sluice.scheduling.cron import Cron

VARIABLES = ("logical_date", "ds", "ds_nodash", "ts", "data_interval_start", "data_interval_end")
_ENVIRONMENT = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_MARKS = ("{{", "{%")


def has_template(text: object) -> bool:
    """Whether ``text`` is a string holding a Jinja tag."""
    return isinstance(text, str) and any(mark in text for mark in _MARKS)


def template_context(logical_date: datetime, interval_start: datetime | None = None, zone: str = "UTC") -> dict[str, Any]:
    """The variables for ``logical_date`` (aware), the data interval starting at ``interval_start`` (default: the
    date), in the IANA time zone ``zone``."""
    tz = ZoneInfo(zone)
    date = logical_date.astimezone(tz)
    return {
        "logical_date": date,
        "ds": date.strftime("%Y-%m-%d"),
        "ds_nodash": date.strftime("%Y%m%d"),
        "ts": logical_date.astimezone(UTC).isoformat(),
        "data_interval_start": (interval_start or date).astimezone(tz),
        "data_interval_end": date,
    }


def run_context(project: Project, options: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of a run with these options (``RunOptions.as_dict()`` or a run record's ``options``):
    ``logical_date`` (ISO text; None: now), ``timezone`` (IANA name), ``data_interval_start`` (ISO text) and
    ``schedule`` (the schedule, sensor or backfill that started it).

    A schedule's run (``trigger`` ``schedule``) whose options give no ``timezone`` or ``data_interval_start`` (a
    tick's request carries the zone only, and runs recorded before they were kept neither) takes them from the
    project's schedule ``schedule`` names: its zone, and its previous tick as the interval's start.
    """
    logical_date = options.get("logical_date")
    date = datetime.fromisoformat(logical_date) if isinstance(logical_date, str) and logical_date else datetime.now(UTC)
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    # a schedule's tick (not a sensor or backfill run that happens to share its name)
    schedule = options.get("schedule") if logical_date and options.get("trigger") in (None, "schedule") else None
    spec = next((s for s in project.schedules if s.name == schedule), None)
    zone = options.get("timezone") or (spec.timezone if spec is not None else "UTC")
    given = options.get("data_interval_start") if logical_date else None
    if isinstance(given, str) and given:
        start: datetime | None = datetime.fromisoformat(given)
    else:
        start = Cron(spec.cron, spec.timezone).previous(date) if spec is not None else None
    return template_context(date, start, zone)


def render_text(
    text: str, context: Mapping[str, Any], where: str = "template", obj: ObjectSpec | None = None, key: str = ""
) -> str:
    """``text`` rendered with ``context``; ConfigError naming ``where`` (and ``obj``, at the line of its ``key``)
    for an unknown variable or a bad tag."""
    try:
        return _ENVIRONMENT.from_string(text).render(context)
    except jinja2.UndefinedError as exc:
        problem = f"{exc.message}; the variables are {', '.join(VARIABLES)}"
    except jinja2.TemplateError as exc:
        problem = f"bad template ({exc})"
    label = f"object {obj.id} ({obj.name}): " if obj is not None else ""
    raise ConfigError(
        f"{label}{where}: {problem}",
        obj.origin.file if obj is not None else None,
        (obj.origin.line_of(key) if key else obj.origin.line) if obj is not None else None,
    )


def templated(obj: ObjectSpec) -> bool:
    """Whether the object's ``sql:`` or a string option of its source holds a template (models render their own)."""
    if obj.model is not None:
        return False
    if has_template(obj.sql):
        return True
    return obj.source is not None and any(has_template(v) for v in msgspec.structs.asdict(obj.source.options).values())


def dated_objects(project: Project) -> frozenset[int]:
    """The objects whose output depends on the logical date: those :func:`templated`, and their descendants (they
    read a templated ancestor's slice). In a run with a logical date each writes its own lake output per date
    (:mod:`sluice.lake.dated`)."""
    from sluice.graph.plan import project_graph

    ids = {oid for oid, obj in project.objects.items() if templated(obj)}
    if not ids:
        return frozenset()
    return frozenset(ids | project_graph(project).descendants(ids))


def render_object(obj: ObjectSpec, context: Mapping[str, Any]) -> ObjectSpec:
    """``obj`` with its ``sql:`` and string source options rendered (``obj`` itself when it holds no template)."""
    if not templated(obj):
        return obj
    changes: dict[str, Any] = {}
    if has_template(obj.sql):
        assert obj.sql is not None
        changes["sql"] = render_text(obj.sql, context, "sql", obj, "sql")
    if obj.source is not None:
        options = obj.source.options
        rendered = {
            key: render_text(value, context, f"source option '{key}'", obj, "source")
            for key, value in msgspec.structs.asdict(options).items()
            if has_template(value)
        }
        if rendered:
            changes["source"] = SourceSpec(obj.source.kind, msgspec.structs.replace(options, **rendered))
    return dataclasses.replace(obj, **changes)


def render_project(project: Project, options: Mapping[str, Any]) -> Project:
    """``project`` with every templated object rendered for a run with these options (:func:`run_context`);
    ``project`` when none is."""
    ids = [oid for oid, obj in project.objects.items() if templated(obj)]
    if not ids:
        return project
    context = run_context(project, options)
    objects = dict(project.objects)
    for oid in ids:
        objects[oid] = render_object(objects[oid], context)
    return dataclasses.replace(project, objects=objects)


class ObjectTemplates:
    """What a worker renders: each templated object of ``project`` for the run an ``ObjectReady`` belongs to.

    ``options_of(run_id) -> Mapping | None`` gives the run's options (its record's: schedule, time zone, data
    interval; remembered per run).
    """

    def __init__(self, project: Project, options_of: Callable[[str], Mapping[str, Any] | None] | None = None) -> None:
        self.project = project
        self.ids = frozenset(oid for oid, obj in project.objects.items() if templated(obj))
        self._options_of = options_of
        self._options: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def render(self, obj: ObjectSpec, run_id: str, logical_date: str | None) -> ObjectSpec:
        """``obj`` rendered for the run ``run_id`` of ``logical_date`` (itself when it holds no template)."""
        if obj.id not in self.ids:
            return obj
        options: Mapping[str, Any] = {}
        if logical_date and self._options_of is not None:
            with self._lock:
                if run_id not in self._options:
                    if len(self._options) > 1000:
                        self._options.clear()
                    self._options[run_id] = self._options_of(run_id) or {}
                options = self._options[run_id]
        return render_object(obj, run_context(self.project, {**options, "logical_date": logical_date}))
