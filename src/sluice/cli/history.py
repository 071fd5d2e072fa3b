"""``sluice prune PATH``: remove history older than ``history: keep`` (docs/operations.md); the ``sluice runs``
filters' date parsing."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from sluice.errors import ConfigError, SluiceError, ValidationFailed

USER_ERROR = 2


def parse_when(value: str | None, flag: str) -> float | None:
    """``--since`` / ``--until``: a date (``2026-01-31``, midnight UTC) or an ISO 8601 time (``2026-01-31T12:00``,
    UTC unless it gives an offset) as epoch seconds. Raises ConfigError."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a date; write YYYY-MM-DD or YYYY-MM-DDTHH:MM[+HH:MM]") from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


@click.command()
@click.argument("path", type=click.Path())
@click.option("--keep", help="Keep this much history (30d, 12h...) instead of the project's history: keep.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--bus", "bus_url", help="Bus URL (default: embedded log in .sluice/).")
@click.option("--state", "state_url", help="State store URL (default: sqlite file in .sluice/).")
def prune(path: str, keep: str | None, dry_run: bool, as_json: bool, bus_url: str | None, state_url: str | None) -> None:
    """Remove runs (with their object states and events) and backfills finished longer ago than history: keep."""
    from sluice.project.load import load_project
    from sluice.runtime.history_settings import HistorySettings
    from sluice.runtime.retention import check_results_pruner, dated_outputs_pruner, prune_history
    from sluice.runtime.run import open_backends

    try:
        project = load_project(path)
        if keep is None and project.history is None:
            raise ConfigError(f"{project.source_file} has no 'history:' section; add history: {{keep: 30d}} or pass --keep")
        try:
            dated = project.history.dated_outputs if project.history is not None else None
            settings = HistorySettings(keep=keep, dated_outputs=dated) if keep is not None else project.history
        except ValueError as exc:
            raise ConfigError(f"--keep: {exc}") from None
        assert settings is not None
        with open_backends(project, bus_url, state_url, read_only=True) as backends:  # a missing file: nothing to prune
            report = prune_history(
                backends.state,
                backends.bus,
                project.name,
                settings.keep_s,
                dry_run=dry_run,
                check_results=check_results_pruner(project, backends.state),
                dated_outputs=dated_outputs_pruner(project, backends.lake, backends.state, settings.dated_outputs_s),
            )
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    if as_json:
        click.echo(json.dumps(report.as_json()))
        return
    cutoff = datetime.fromtimestamp(report.cutoff, UTC).isoformat(timespec="seconds")
    click.echo(f"history finished before {cutoff}:")
    for line in report.lines():
        click.echo(f"  {line}")
