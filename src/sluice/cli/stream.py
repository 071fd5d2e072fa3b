"""``sluice stream PATH [--object ID]``: run the project's streaming objects until stopped (docs/streaming.md)."""

from __future__ import annotations

import signal
import sys

import click

from sluice.cli.options import log_options
from sluice.cli.tuning import tune_gc
from sluice.errors import SluiceError, ValidationFailed
from sluice.observability import metrics
from sluice.observability.logs import setup_logging

PROGRESS_EVERY_S = 2.0


@click.command()
@click.argument("path", type=click.Path())
@click.option("--object", "object_ids", multiple=True, type=int, help="A streaming object to run (repeatable; default: all).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Expose Prometheus metrics on PORT (at /metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option(
    "--available-now",
    is_flag=True,
    help="Process what the topics hold when each object starts, commit it, then stop (Spark's Trigger.AvailableNow).",
)
@log_options
def stream(
    path: str,
    object_ids: tuple[int, ...],
    metrics_port: int | None,
    metrics_host: str,
    quiet: bool,
    available_now: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run the project's streaming objects: Kafka topics into the lake in micro-batches, exactly once.

    Progress on stderr every 2 s (records/s, lag, last committed micro-batch). SIGTERM or Ctrl-C commits
    the micro-batch being gathered and stops; exit status 1 when an object stopped on an error.
    """
    from sluice.lake.registry import open_lake
    from sluice.project.load import load_project
    from sluice.streaming.host import StreamHost

    setup_logging(log_format, log_level)
    tune_gc()
    try:
        project = load_project(path)
        host = StreamHost(project, open_lake(project), object_ids or None, available_now=available_now)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if metrics_port:
        metrics.serve(metrics_port, metrics_host)

    def stop(signum: int, frame: object) -> None:
        host.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    names = ", ".join(f"{loop.obj.id} ({loop.obj.name})" for loop in host.loops)
    until = "until what the topics hold now is committed" if available_now else "Ctrl-C to stop"
    click.echo(f"streaming {names}; {until}", err=True)  # also with --quiet: says the stop handler is in place
    host.start()
    while host.running():
        host.join(PROGRESS_EVERY_S)
        if not quiet:
            for status in host.statuses:
                click.echo(status.progress_line(), err=True)
    failed = [status for status in host.statuses if status.state == "failed"]
    for status in failed:
        click.echo(f"error: streaming object {status.object_id} ({status.name}): {status.error}", err=True)
    sys.exit(1 if failed else 0)
