"""``sluice alerts PATH test [--channel NAME]``: send a test alert through the project's alert channels, so a
user can check SMTP and webhook settings before an alert matters; ``sluice alerts PATH list [--json]``: the
channels, rules and deadlines as Sluice read them (docs/alerts.md)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from sluice.errors import SluiceError, ValidationFailed

USER_ERROR = 2


@click.group()
@click.argument("path", type=click.Path())
@click.pass_context
def alerts(ctx: click.Context, path: str) -> None:
    """The project's alert channels (alerts: in sluice.yaml)."""
    ctx.obj = path


def _load_alerts(path: str) -> tuple[str, Any]:
    from sluice.project.load import load_project

    try:
        project = load_project(path)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    if project.alerts is None or not project.alerts.channels:
        click.echo(f"error: {project.source_file} defines no alert channels; add alerts: channels: (docs/alerts.md)", err=True)
        sys.exit(USER_ERROR)
    return project.name, project.alerts


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: channels, rules, sla.")
@click.pass_obj
def list_(path: str, as_json: bool) -> None:
    """The channels (no secrets), the rules in the order they are tried, and the deadlines."""
    from sluice.alerts.listing import describe, lines

    _, spec = _load_alerts(path)
    described = describe(spec)
    if as_json:
        click.echo(json.dumps(described))
        return
    for line in lines(described):
        click.echo(line)


@alerts.command("test")
@click.option("--channel", "names", multiple=True, help="A channel to test (repeatable; default: every channel).")
@click.pass_obj
def test(path: str, names: tuple[str, ...]) -> None:
    """Send a test alert through each channel; exit status 1 when one could not deliver it."""
    from sluice.alerts.channels import DeliveryError, open_channel
    from sluice.alerts.model import Alert
    from sluice.errors import did_you_mean

    name, spec = _load_alerts(path)
    for name in names:
        if name not in spec.channels:
            hint = did_you_mean(name, list(spec.channels))
            click.echo(f"error: no channel named {name!r} (channels: {', '.join(spec.channels)}).{hint}", err=True)
            sys.exit(USER_ERROR)
    alert = Alert(
        trigger="test",
        title="test alert: this channel works",
        project=name,
        severity="info",
        error="nothing failed: `sluice alerts test` sent this to check the channel's settings",
        url=spec.ui_url,
        at=time.time(),
        rule="sluice alerts test",
    )
    failed = 0
    for name in names or tuple(spec.channels):
        try:
            open_channel(spec.channels[name]).deliver(alert)
        except (DeliveryError, SluiceError) as exc:
            failed += 1
            click.echo(f"channel {name}: not delivered: {exc}", err=True)
            continue
        click.echo(f"channel {name} ({spec.channels[name].type}): test alert sent")
    sys.exit(1 if failed else 0)
