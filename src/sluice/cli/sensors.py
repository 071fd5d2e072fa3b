"""``sluice sensors PATH [--json] [--poll]``: the project's sensors and their cursors (docs/sensors.md)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from sluice.errors import SluiceError, ValidationFailed

USER_ERROR = 2


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the sensors and their cursors as JSON.")
@click.option("--poll", is_flag=True, help="Poll every sensor once now and run what they ask for (in this process).")
@click.option("--bus", "bus_url", help="Bus URL (default: embedded log in .sluice/).")
@click.option("--state", "state_url", help="State store URL (default: sqlite file in .sluice/).")
def sensors(path: str, as_json: bool, poll: bool, bus_url: str | None, state_url: str | None) -> None:
    """List the project's sensors: type, minimum interval, targets, when each last fired and its cursor."""
    from sluice.project.load import load_project
    from sluice.runtime.run import open_backends
    from sluice.scheduling.sensors import Sensors

    try:
        project = load_project(path)
        with open_backends(project, bus_url, state_url, read_only=not poll) as backends:
            hosted = Sensors(project, backends.state, backends.bus)
            try:
                started = _poll(project, hosted, bus_url, state_url) if poll else []
                rows = hosted.cursors()
            finally:
                hosted.close()
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    if as_json:
        click.echo(json.dumps({"sensors": rows, "started": started} if poll else rows))
        return
    for line in started:
        click.echo(line, err=True)
    for row in rows:
        fired = datetime.fromtimestamp(row["fired_at"], UTC).isoformat(timespec="seconds") if row["fired_at"] else "never"
        state = "" if row["enabled"] else " (disabled)"
        error = f"  error: {row['error']}" if row["error"] else ""
        click.echo(f"{row['name']:<20} {row['type']:<6} every >= {row['min_interval_s']:g}s  last fired {fired}{state}{error}")


def _poll(project: object, hosted: object, bus_url: str | None, state_url: str | None) -> list[str]:
    from sluice.project.model import Project
    from sluice.scheduling.launch import InProcessRuns
    from sluice.scheduling.sensors import Sensors

    assert isinstance(project, Project) and isinstance(hosted, Sensors)
    requests = hosted.poll(datetime.now(UTC))
    lines = []
    if requests:
        with InProcessRuns(project, bus_url=bus_url, state_url=state_url) as runs:
            for request in requests:
                ids: list[str] = []
                status = runs(request, ids.append)
                lines.append(f"sensor {request.name} fired: run {ids[0] if ids else '?'} {status}")
    return lines
