"""The ``sluice`` command. Thin wiring: every command calls the library and prints the result.

User errors (``SluiceError``) print one line to stderr and exit 2; a run with a failed object exits 1.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sluice import events as ev
from sluice.cli.options import log_options, service_log_options, workers_option
from sluice.cli.tuning import freeze_heap, tune_gc
from sluice.connectors.kafka_live import LIVE_TIMEOUT_S
from sluice.errors import ConfigError, SluiceError, ValidationFailed
from sluice.observability import metrics
from sluice.observability.logs import setup_logging
from sluice.plugins.base import KINDS, PluginKind
from sluice.project.load import load_project, parse_project
from sluice.project.model import Project
from sluice.state.base import RUN_STATUSES

if TYPE_CHECKING:
    from sluice.runtime.coordinator import Coordinator

F = TypeVar("F", bound=Callable[..., Any])
USER_ERROR = 2


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(USER_ERROR)


def _load(path: str) -> Project:
    try:
        return load_project(path)
    except ValidationFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)


def backend_options(func: F) -> F:
    func = click.option("--state", "state_url", help="State store URL (default: sqlite file in .sluice/).")(func)
    func = click.option("--bus", "bus_url", help="Bus URL (default: embedded log in .sluice/).")(func)
    return func


def simulation_options(func: F) -> F:
    """The seed's scenario options shared by ``run`` and ``serve``: --simulate, --delay-scale, --fail."""
    func = click.option("--fail", "fail_ids", multiple=True, type=int, help="Force this object to fail (repeatable).")(func)
    func = click.option(
        "--delay-scale", type=float, default=1.0, show_default=True, help="Multiply simulated delays (0 = none)."
    )(func)
    func = click.option(
        "--simulate", is_flag=True, help="Objects without work sleep their stage's delay (0.5/0.6/0.8 s by default)."
    )(func)
    return func


def _check_simulation(project: Project, path: str, delay_scale: float, fail_ids: tuple[int, ...]) -> None:
    if delay_scale < 0:
        _fail("--delay-scale must be >= 0")
    unknown = [i for i in fail_ids if i not in project.objects]
    if unknown:
        _fail(f"--fail names unknown object id(s) {unknown}; see 'sluice plan {path}'")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sluice")
def cli() -> None:
    """Sluice: data objects with dependencies, processed in stages by workers over an event bus."""


@cli.command()
@click.argument("path", type=click.Path())
@click.option(
    "--live",
    is_flag=True,
    help="Also check each sync against its databases: tables that match nothing, tables without a key, a source "
    "not set up for capture, a server that cannot be reached (what 'sluice sync' checks before it starts); the "
    "api: section's tables and connections; and Kafka: each broker the objects read from or the bus uses answers "
    f"within {LIVE_TIMEOUT_S:g} s, each topic the objects read exists, and so does its dead-letter topic unless the "
    "broker creates it at the first dead letter (auto.create.topics.enable=true: a note).",
)
def validate(path: str, live: bool) -> None:
    """Check a project (folder, sluice.yaml or Objets.json) and report every problem."""
    project, problems = parse_project(path, ahead=True)
    if problems or project is None:
        click.echo(f"error: {ValidationFailed(problems)}", err=True)
        sys.exit(USER_ERROR)
    live_notes = _check_live(project) if live else []
    per_stage = {name: sum(1 for o in project.objects.values() if o.stage == name) for name in project.stage_names}
    stages = ", ".join(f"{name} {count}" for name, count in per_stage.items())
    left_out = f"; {len(project.left_out)} left out (inactive, see 'sluice plan')" if project.left_out else ""
    count = len(project.objects)
    syncs = len(project.syncs)
    synced = (
        f" and {syncs} sync{'s' if syncs != 1 else ''} ({', '.join(s.settings.name for s in project.syncs)})" if syncs else ""
    )
    click.echo(
        f"ok: {project.source_file} defines {count} object{'s' if count != 1 else ''} ({stages}){left_out}{synced}; "
        "no problems found"
    )
    for note in [*project.notes, *live_notes]:
        click.echo(f"note: {note}")
    from sluice.connectors.rest_options import unset_secret

    for obj in project.objects.values():
        unset = unset_secret(obj.source.options) if obj.source is not None else None
        if unset is not None:
            click.echo(f"note: object {obj.id} ({obj.name}): {unset}")


def _check_live(project: Project) -> list[str]:
    """The syncs', the api: section's and Kafka's checks against their servers (``--live``); exits with every problem
    found, else returns the notes to print (a Kafka bus's topics Sluice will create, dead-letter topics the broker
    will create)."""
    from sluice.cdc.preflight import live_checks
    from sluice.connectors.kafka_live import live_kafka

    syncs = live_checks(project.syncs)
    problems, notes = list(syncs.problems), list(syncs.notes)
    kafka = live_kafka(project)
    problems += kafka.problems
    if project.api is not None:
        from sluice.api.config_live import live_check

        spec = project.api
        api_problems, api_notes = live_check(spec.settings, spec.urls, project.root, spec.origin)
        problems += api_problems
        notes += api_notes
    if problems:
        problems.sort(key=lambda p: (p.source or "", p.line or 0))  # in file order, whichever check found them
        click.echo(f"error: {ValidationFailed(problems)}", err=True)
        sys.exit(USER_ERROR)
    notes.sort(key=lambda p: (p.source or "", p.line or 0))
    return [str(note) for note in notes] + kafka.notes


def _check_hosted_syncs(project: Project, names: tuple[str, ...]) -> None:
    """``sluice serve --sync NAME``: each a sync of the project, checked against its databases before the server
    starts, as ``sluice sync`` checks it (:func:`~sluice.cdc.preflight.live_check`): exits 2 with every problem at its
    line, else prints the notes."""
    from sluice.cdc.preflight import live_checks

    try:
        specs = [project.sync(name) for name in dict.fromkeys(names)]
    except ConfigError as exc:  # no such sync
        _fail(f"--sync: {exc}")
    found = live_checks(specs)
    if found.problems:
        click.echo(f"error: {ValidationFailed(found.problems)}", err=True)
        sys.exit(USER_ERROR)
    for note in found.notes:
        click.echo(f"note: {note}", err=True)


def _plan_action(action: str, streaming: bool) -> str:
    """How ``sluice plan`` shows a row's action (``run``, ``fresh``, ``stream``), a streaming object's as such."""
    if action == "run":
        return "[green]run[/green]"
    if action == "stream":
        return "[yellow]stream first (nothing committed yet)[/yellow]"
    return "[dim]fresh (streamed)[/dim]" if streaming else "[dim]fresh (skip)[/dim]"


@cli.command()
@click.argument("path", type=click.Path())
@click.option(
    "--target", "targets", multiple=True, type=int, help="Object id to produce (repeatable). Default: the final objects."
)
@click.option("--force", is_flag=True, help="Plan every object to run, fresh or not.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@backend_options
def plan(path: str, targets: tuple[int, ...], force: bool, as_json: bool, bus_url: str | None, state_url: str | None) -> None:
    """Show which objects a run would process, in order, and which are fresh.

    A streaming object the plan needs shows as ``fresh (streamed)`` once ``sluice stream`` has committed a
    micro-batch of it, else as ``stream first``, with a line saying how to start it (exit 0 all the same).
    """
    from sluice.runtime.planning import Fingerprints, not_streamed_yet, plan_streams, stream_command
    from sluice.runtime.run import open_backends
    from sluice.runtime.summary import RunOptions

    project = _load(path)
    with open_backends(project, bus_url, state_url, read_only=True) as backends:
        latest = {} if force else dict(backends.state.latest_outputs(project.name))
        fingerprints = Fingerprints(project, backends.lake, latest=latest, force=force)
        the_plan, unstreamed = plan_streams(project, RunOptions(targets=list(targets) or None, force=force), fingerprints)
    to_run = [oid for oid in the_plan.to_run if oid not in unstreamed]
    rows: list[dict[str, Any]] = [
        {
            "id": oid,
            "name": project.objects[oid].name,
            "stage": project.objects[oid].stage,
            "parents": list(project.objects[oid].parents),
            "action": "fresh" if oid in the_plan.fresh else "stream" if oid in unstreamed else "run",
        }
        for oid in the_plan.order
    ]
    left_out = [
        {"id": oid, "name": item.object.name, "stage": item.object.stage, "reason": item.reason}
        for oid, item in sorted(project.left_out.items())
    ]
    if as_json:
        summary = {
            "targets": the_plan.targets,
            "objects": rows,
            "to_run": len(to_run),
            "fresh": len(the_plan.fresh),
            "to_stream": len(unstreamed),
        }
        click.echo(json.dumps({**summary, "left_out": left_out, "notes": list(project.notes)}, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"plan: {len(rows)} objects for targets {', '.join(map(str, the_plan.targets))}")
    for column in ("order", "id", "name", "stage", "parents", "action"):
        table.add_column(column)
    for index, row in enumerate(rows, 1):
        table.add_row(
            str(index),
            str(row["id"]),
            str(row["name"]),
            str(row["stage"]),
            ", ".join(map(str, row["parents"])),
            _plan_action(row["action"], project.objects[row["id"]].streaming is not None),
        )
    from sluice.cli.progress import make_console

    make_console().print(table)
    to_stream = f", {len(unstreamed)} to stream first" if unstreamed else ""
    click.echo(f"{len(to_run)} to run, {len(the_plan.fresh)} fresh{to_stream}")
    for oid in unstreamed:
        click.echo(
            f"{not_streamed_yet(project, oid)}: 'sluice stream' runs it, not 'sluice run', which refuses this plan "
            f"until it has; start it with: {stream_command(project, oid)}"
        )
    unplanned = sorted(set(project.objects) - set(the_plan.order))
    if unplanned:
        shown = ", ".join(f"{oid} ({project.objects[oid].name})" for oid in unplanned[:10])
        more = f" and {len(unplanned) - 10} more" if len(unplanned) > 10 else ""
        them = "it" if len(unplanned) == 1 else "them"
        click.echo(f"not planned: {shown}{more}: no target needs {them} (plan one with --target {unplanned[0]})")
    if left_out:
        click.echo(f"left out of every plan: {len(left_out)} objects")
        for item in left_out:
            click.echo(f"  {item['id']} {item['name']} ({item['stage']}): {item['reason']}")
    for note in project.notes:
        click.echo(f"note: {note}")


@cli.command()
@click.argument("path", type=click.Path())
@click.option(
    "--target", "targets", multiple=True, type=int, help="Object id to produce (repeatable). Default: the final objects."
)
@click.option("--force", is_flag=True, help="Run every planned object even if fresh.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end instead of live progress.")
@simulation_options
@click.option("--resume", is_flag=True, help="Continue the last unfinished run (after a crash) instead of starting one.")
@click.option("--run", "run_id", help="With --resume: the run to continue (an interrupted one too).")
@workers_option
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Expose Prometheus metrics on PORT (at /metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on.")
@backend_options
@log_options
def run(
    path: str,
    targets: tuple[int, ...],
    force: bool,
    as_json: bool,
    simulate: bool,
    delay_scale: float,
    fail_ids: tuple[int, ...],
    resume: bool,
    run_id: str | None,
    workers: str,
    metrics_port: int | None,
    metrics_host: str,
    bus_url: str | None,
    state_url: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Run a project: process the planned objects in dependency order with stage workers."""
    from sluice.cli.output import guard_stdout
    from sluice.runtime.run import RunOptions, WorkersMode, run_project

    if run_id is not None and not resume:  # a new run would start, the one named left as it is
        _fail(
            f"--run {run_id} names a run to continue: add --resume (sluice run {path} --resume --run {run_id}), "
            "or drop --run to start a new run"
        )
    setup_logging(log_format, log_level)
    guard_stdout()  # `sluice run PATH | head -3`: the run goes on once head has its lines, and ends recorded
    project = _load(path)
    _check_simulation(project, path, delay_scale, fail_ids)
    tune_gc()
    if metrics_port:
        metrics.serve(metrics_port, metrics_host)
    options = RunOptions(
        targets=list(targets) or None,
        force=force,
        simulate=simulate,
        delay_scale=delay_scale,
        fail=frozenset(fail_ids),
        resume=(run_id or "") if resume else None,
    )
    mode: WorkersMode = "external" if workers == "external" else "in-process"
    run = functools.partial(
        run_project,
        project,
        options,
        workers=mode,
        bus_url=bus_url,
        state_url=state_url,
        on_start=_cancel_on_interrupt,
        on_planned=freeze_heap,
    )
    if as_json:
        summary = run()
        click.echo(json.dumps(summary.to_json()))
    else:
        from sluice.cli.progress import RunProgress, make_console, summary_table

        console = make_console()
        with RunProgress(project, console) as progress:
            summary = run(observer=progress)
        console.print(summary_table(project, summary))
    sys.exit(0 if summary.status == "succeeded" else 1)


def _cancel_on_interrupt(coordinator: Coordinator) -> None:
    """First Ctrl-C (or SIGTERM) cancels the run cleanly; a second one stops at once."""

    def handler(signum: int, frame: object) -> None:
        if coordinator.cancelling:
            raise KeyboardInterrupt
        click.echo("cancelling the run: objects not started are skipped (interrupt again to stop at once)", err=True)
        coordinator.cancel()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--run", "run_id", help="The run whose events to print (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (also the default when not on a terminal).")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of every event type instead.")
@backend_options
def events(path: str, run_id: str | None, as_json: bool, schema: bool, bus_url: str | None, state_url: str | None) -> None:
    """Print a run's events in log order."""
    if schema:
        click.echo(json.dumps(ev.json_schemas(), indent=2))
        return
    from sluice.runtime.history import run_events
    from sluice.runtime.run import open_backends

    project = _load(path)
    json_lines = as_json or not sys.stdout.isatty()
    with open_backends(project, bus_url, state_url, read_only=True) as backends:
        for position, event in run_events(backends, project, run_id):
            record = ev.to_record(event, position)
            if json_lines:
                click.echo(json.dumps(record, default=str))
            else:
                click.echo(_event_line(record))


def _event_line(record: dict[str, Any]) -> str:
    skip = {"type", "v", "run_id", "ts", "object_id", "stage", "attempt", "position"}
    details = " ".join(f"{k}={v}" for k, v in record.items() if k not in skip and v not in (None, "", [], {}))
    obj = f"{record.get('object_id', ''):>6} a{record.get('attempt', '')}" if "object_id" in record else " " * 9
    return f"{record['position']:>8}  {record['ts']}  {record['type']:<14} {obj}  {details}"


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--limit", default=20, show_default=True)
@click.option("--status", type=click.Choice(list(RUN_STATUSES)), help="Only runs with this status.")
@click.option("--schedule", help="Only runs of this schedule, sensor or backfill (backfill:<id>).")
@click.option("--since", help="Only runs started at or after this date (YYYY-MM-DD, or an ISO time; UTC).")
@click.option("--until", help="Only runs started before this date (YYYY-MM-DD, or an ISO time; UTC).")
@click.option("--json", "as_json", is_flag=True)
@backend_options
def runs(
    path: str,
    limit: int,
    status: str | None,
    schedule: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    bus_url: str | None,
    state_url: str | None,
) -> None:
    """List recent runs, most recent first (filtered by status, schedule and start date)."""
    from sluice.cli.history import parse_when
    from sluice.runtime.run import open_backends
    from sluice.runtime.run_lease import coordinator_gone

    project = _load(path)
    after, before = parse_when(since, "--since"), parse_when(until, "--until")
    with open_backends(project, bus_url, state_url, read_only=True) as backends:
        records = backends.state.find_runs(project.name, status=status, schedule=schedule, since=after, until=before, limit=limit)
        # a run started by hand whose coordinator was killed: still recorded running until a new run marks it
        now = time.time()
        gone = {r.run_id for r in records if coordinator_gone(backends.state, r, now)}
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "run_id": r.run_id,
                        "status": r.status,
                        "coordinator_gone": r.run_id in gone,
                        "started_at": r.started_at,
                        "finished_at": r.finished_at,
                        "trigger": r.options.get("trigger", "manual"),
                        "schedule": r.options.get("schedule"),
                        "logical_date": r.options.get("logical_date"),
                    }
                    for r in records
                ]
            )
        )
        return
    for r in records:
        # an interrupted run's finished_at is when a later run marked it, not when it stopped
        took = f"{r.finished_at - r.started_at:.2f}s" if r.finished_at and r.status != "interrupted" else "-"
        by = r.options.get("schedule") or r.options.get("trigger", "manual")
        logical = f"  {r.options['logical_date']}" if r.options.get("logical_date") else ""
        shown = f"{r.status} (coordinator gone)" if r.run_id in gone else r.status
        click.echo(f"{r.run_id}  {shown:<11} {took:>9}  {by}{logical}")


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--stage", required=True, help="The stage whose objects this worker processes.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Objects processed at once (default: the stage's setting).")
@click.option("--lease-s", type=float, help="Seconds before an unfinished object is given to another worker.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Expose Prometheus metrics on PORT (at /metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on.")
@backend_options
@service_log_options
def worker(
    path: str,
    stage: str,
    concurrency: int | None,
    lease_s: float | None,
    metrics_port: int | None,
    metrics_host: str,
    bus_url: str | None,
    state_url: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Run a stage worker process until interrupted (SIGINT/SIGTERM)."""
    from sluice.errors import did_you_mean
    from sluice.runtime.execute import ObjectExecutor
    from sluice.runtime.run import RunActivity, open_backends
    from sluice.runtime.worker import StageWorker

    setup_logging(log_format, log_level)
    project = _load(path)
    if stage not in project.stage_names:
        _fail(f"unknown stage '{stage}' (stages: {', '.join(project.stage_names)}).{did_you_mean(stage, project.stage_names)}")
    tune_gc()
    if metrics_port:
        metrics.serve(metrics_port, metrics_host)
    with open_backends(project, bus_url, state_url) as backends:
        executor = ObjectExecutor(project, backends.lake, backends.state)
        the_worker = StageWorker(
            project,
            backends.bus,
            project.stage(stage),
            executor,
            concurrency=concurrency,
            lease_s=lease_s,
            run_active=RunActivity(backends.state, root=project.root),
        )

        def stop(signum: int, frame: object) -> None:
            the_worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        click.echo(f"worker {the_worker.name} processing stage '{stage}' from {backends.bus.url}", err=True)
        thread = threading.Thread(target=the_worker.run, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)


@cli.command()
@click.argument("path", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--sync", "syncs", multiple=True, metavar="NAME", help="Also run this sync of the project (repeatable).")
@click.option(
    "--stream",
    "streams",
    multiple=True,
    metavar="ID|all",
    help="Also run this streaming object of the project (repeatable; all: every one).",
)
@click.option(
    "--scheduler/--no-scheduler",
    "scheduler",
    default=None,
    help="Fire the project's schedules in this server (default: on when the project has enabled schedules).",
)
@simulation_options
@backend_options
@service_log_options
def serve(
    path: str,
    host: str,
    port: int,
    syncs: tuple[str, ...],
    streams: tuple[str, ...],
    scheduler: bool | None,
    simulate: bool,
    delay_scale: float,
    fail_ids: tuple[int, ...],
    bus_url: str | None,
    state_url: str | None,
    log_format: str,
    log_level: str,
) -> None:
    """Serve the project's API and web UI: runs on request, live events (SSE), metrics. Stop with Ctrl-C."""
    from sluice.server.serve import serve_project
    from sluice.server.serve_settings import control_token
    from sluice.server.services import ServerSettings

    setup_logging(log_format, log_level)
    project = _load(path)
    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535, got {port}")
    _check_simulation(project, path, delay_scale, fail_ids)
    _check_hosted_syncs(project, syncs)
    try:
        token = control_token(project)  # sluice.yaml's serve: source, else SLUICE_CONTROL_TOKEN
    except ConfigError as exc:  # a source named but giving no token: refuse rather than serve the endpoints open
        _fail(str(exc))
    settings = ServerSettings(
        simulate=simulate,
        delay_scale=delay_scale,
        fail=frozenset(fail_ids),
        bus_url=bus_url,
        state_url=state_url,
        syncs=tuple(syncs),
        streams=tuple(streams),
        scheduler=scheduler,
        control_token=token,
    )

    def ready(url: str) -> None:
        click.echo(f"serving project '{project.name}' at {url} (API docs at {url}/docs); Ctrl-C to stop", err=True)

    serve_project(project, settings, host, port, on_ready=ready)


@cli.command()
@click.argument("directory", type=click.Path(), default="sluice-demo")
@click.option("--run/--no-run", "do_run", default=True, help="Run the project after building it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end instead of live progress.")
def demo(directory: str, do_run: bool, as_json: bool) -> None:
    """Build the demo project in DIRECTORY (default ./sluice-demo) and run it."""
    from sluice.demo.build import build_demo, describe_outputs

    root = build_demo(Path(directory))
    if not do_run:
        click.echo(f"demo project written to {root}; run it with: sluice run {root}")
        return
    from sluice.runtime.run import RunOptions, run_project

    project = _load(str(root))
    if as_json:
        summary = run_project(project, RunOptions())
        click.echo(json.dumps(summary.to_json()))
    else:
        from sluice.cli.progress import RunProgress, make_console, summary_table

        console = make_console()
        console.print(f"demo project: {root}", markup=False, highlight=False)
        with RunProgress(project, console) as progress:
            summary = run_project(project, RunOptions(), observer=progress)
        console.print(summary_table(project, summary))
        console.print(describe_outputs(project, summary))
    sys.exit(0 if summary.status == "succeeded" else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the plugins and their options as JSON.")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only plugins of this kind.")
def plugins(as_json: bool, kind: PluginKind | None) -> None:
    """List the plugins (built-in and installed) with their options, types, defaults and extras."""
    from sluice.plugins.describe import describe_all, render_text

    infos = describe_all(kind)
    if not infos and kind is not None:
        click.echo(f"no {kind} plugins are installed (Sluice ships none of this kind yet)", err=True)
    if as_json:
        click.echo(json.dumps([info.as_json() for info in infos], indent=2))
        return
    click.echo(render_text(infos, bold=lambda text: click.style(text, bold=True), dim=lambda text: click.style(text, dim=True)))


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the schema to this file instead of stdout.")
@click.option("--builtin", is_flag=True, help="Only the built-in plugins (what the package ships), not installed ones.")
def schema(output: str | None, builtin: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of sluice.yaml, for editors (see docs/plugins.md)."""
    from sluice.plugins.schema import builtin_schema_text, schema_text

    text = builtin_schema_text() if builtin else schema_text()
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror}")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _register_sync() -> None:
    from sluice.cli.sync import sync

    cli.add_command(sync)


_register_sync()


def _register_state() -> None:
    from sluice.cli.state import state

    cli.add_command(state)


_register_state()


def _register_api_key() -> None:
    from sluice.cli.api_key import api_key

    cli.add_command(api_key)


_register_api_key()


def _register_stream() -> None:
    from sluice.cli.stream import stream

    cli.add_command(stream)


_register_stream()


def _register_produce() -> None:
    from sluice.cli.produce import produce

    cli.add_command(produce)


_register_produce()


def _register_alerts() -> None:
    from sluice.cli.alerts import alerts

    cli.add_command(alerts)


_register_alerts()


def _register_check() -> None:
    from sluice.cli.checks import check

    cli.add_command(check)


_register_check()


def _register_runs_commands() -> None:
    from sluice.cli.backfill import backfill
    from sluice.cli.history import prune
    from sluice.cli.sensors import sensors

    cli.add_command(backfill)
    cli.add_command(prune)
    cli.add_command(sensors)


_register_runs_commands()


def _register_schedules() -> None:
    from sluice.cli.schedules import scheduler, schedules

    cli.add_command(scheduler)
    cli.add_command(schedules)


_register_schedules()


def main() -> None:
    try:
        cli(standalone_mode=True)
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
