"""``sluice scheduler PATH`` (fire the project's schedules until stopped) and ``sluice schedules PATH [--json]``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime

import click

from sluice.cli.options import log_options
from sluice.cli.tuning import tune_gc
from sluice.errors import SluiceError, ValidationFailed
from sluice.observability import metrics
from sluice.observability.logs import setup_logging
from sluice.scheduling.scheduler import LEASE_S, StepReport


def tick_lines(report: StepReport) -> list[str]:
    """One line per tick fired or missed in a step."""
    lines = [
        f"fired {t.schedule} {t.logical_date}: run {t.run_id}"
        if t.run_id
        else f"fired {t.schedule} {t.logical_date}: run did not start"
        for t in report.fired
    ]
    lines += [f"missed {t.schedule} {t.logical_date}: {t.reason}" for t in report.missed]
    return lines


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "--workers",
    type=click.Choice(["in-process", "external"]),
    default="in-process",
    show_default=True,
    help="in-process: stage workers in this process run the scheduled runs; external: `sluice worker` processes do.",
)
@click.option("--lease-s", type=click.FloatRange(1.0), default=LEASE_S, show_default=True, help="Seconds the lease lasts.")
@click.option("--holder", help="Name of this scheduler in the lease (default host:pid:n).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Expose Prometheus metrics on PORT (at /metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on.")
@log_options
def scheduler(
    path: str,
    workers: str,
    lease_s: float,
    holder: str | None,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
) -> None:
    """Fire the project's schedules until stopped (SIGTERM or Ctrl-C): one line per tick fired or missed.

    Several schedulers may run on one state store: one holds the lease and schedules, the others stand by and
    take over when it stops or its lease expires. Runs going at shutdown get 30 s to finish, then are cancelled.
    """
    from sluice.alerts.service import AlertService
    from sluice.project.load import load_project
    from sluice.runtime.retention import history_pruner
    from sluice.runtime.run import WorkersMode, open_backends
    from sluice.scheduling.host import SchedulerHost
    from sluice.scheduling.sensors import hosted_sensors

    setup_logging(log_format, log_level)
    try:
        project = load_project(path)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if not [s for s in project.schedules if s.enabled] and not [s for s in project.sensors if s.settings.enabled]:
        click.echo(f"error: project '{project.name}' has no enabled schedule or sensor; add schedules: to sluice.yaml", err=True)
        sys.exit(2)
    tune_gc()
    if metrics_port:
        metrics.serve(metrics_port, metrics_host)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    was_leader: list[bool | None] = [None]

    def on_step(report: StepReport) -> None:
        if report.leader != was_leader[0]:
            click.echo(
                "holding the lease: scheduling" if report.leader else "another scheduler holds the lease: standing by", err=True
            )
            was_leader[0] = report.leader
        for line in tick_lines(report):
            click.echo(line, err=True)

    with open_backends(project) as backends:
        mode: WorkersMode = "external" if workers == "external" else "in-process"
        sensors = hosted_sensors(project, backends.state, backends.bus)
        pruner = history_pruner(project, backends)  # history: keep, every history: every
        alerts = AlertService(project, backends.bus, backends.state) if project.alerts is not None else None
        host = SchedulerHost(
            project,
            backends,
            workers=mode,
            lease_s=lease_s,
            holder=holder,
            on_step=on_step,
            sources=sensors,
            services=[service for service in (pruner, alerts) if service is not None],
        )
        names = ", ".join([s.name for s in host.scheduler.schedules] + [s.name for s in project.sensors if s.settings.enabled])
        click.echo(f"scheduling {names} of project {project.name} as {host.scheduler.holder}; Ctrl-C to stop", err=True)
        host.start()
        try:
            while not stop.wait(0.5) and host.running():
                pass
        finally:
            host.stop(grace_s=30.0)
    click.echo("scheduler stopped", err=True)


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/schedules.md gives its shape).")
@click.option("--count", type=click.IntRange(1, 100), default=3, show_default=True, help="Next fire times per schedule.")
def schedules(path: str, as_json: bool, count: int) -> None:
    """List the project's schedules: next fire times, last tick and last run."""
    from sluice.project.load import load_project
    from sluice.runtime.reading import reading_state
    from sluice.scheduling.listing import schedules_view

    try:
        project = load_project(path)
        with reading_state(project) as state:
            view = schedules_view(project, state, datetime.now(UTC), count)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    if not view["schedules"]:
        click.echo(f"project {project.name} has no schedules")
        return
    for item in view["schedules"]:
        where = "all objects" if item["targets"] is None else f"targets {', '.join(map(str, item['targets']))}"
        state_text = "" if item["enabled"] else " (disabled)"
        click.echo(f"{item['name']}{state_text}: {item['cron']} {item['timezone']}, {where}, catch_up {item['catch_up']}")
        if item["next"]:
            click.echo(f"  next: {', '.join(item['next'])}")
        if item["error"]:
            click.echo(f"  error: {item['error']}")
        last = item["last_run"]
        click.echo(f"  last run: {last['logical_date']} {last['run_id']} {last['status']}" if last else "  last run: none")
    lease = view["lease"]
    if lease is not None:
        click.echo(f"lease: {lease['holder']} ({'active' if lease['active'] else 'expired'})")
