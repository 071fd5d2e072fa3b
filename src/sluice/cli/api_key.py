"""``sluice api-key create|list|revoke``: the data API's keys, kept hashed in the project's state store.

``create`` prints the key once on stdout (details on stderr), so ``KEY=$(sluice api-key create --role editor)``
works; only its SHA-256 is stored (:mod:`sluice.api.security.keys`).
"""

from __future__ import annotations

import getpass
import json
import re
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import click

from sluice.errors import ConfigError, SluiceError, ValidationFailed, did_you_mean
from sluice.project.load import load_project
from sluice.project.model import Project

USER_ERROR = 2
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float) -> float:
    """Seconds since the epoch from ``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` (from ``now``) or an ISO 8601
    date or time (``2026-01-31``, ``2026-01-31T12:00:00+01:00``; UTC when no zone). Raises ConfigError."""
    match = _DURATION.match(text.strip().lower())
    if match:
        return now + int(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--expires {text!r}: use a duration (30d, 12h, 90m, 2w) or an ISO date (2026-01-31)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    at = moment.timestamp()
    if at <= now:
        raise ConfigError(f"--expires {text!r} is in the past")
    return at


def _open(path: str, state_url: str | None, reading: ExitStack | None = None) -> tuple[Project, Any]:
    """The project and its key store; with ``reading`` (a command that only reads), a SQLite state store that does
    not exist yet is an empty one that ``reading`` removes (nothing created in the project folder)."""
    from sluice.api.security.keys import open_key_store
    from sluice.runtime.reading import unwritten

    try:
        project = load_project(path)
    except ValidationFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    url = state_url or project.resolve_state_url()
    return project, open_key_store(unwritten(url, project.root, reading) if reading is not None else url, project.root)


def _check_role(project: Project, role: str) -> None:
    """Refuse a role the project's ``api:`` section does not define (when the project has one)."""
    if project.api is None:
        return
    api = project.api.settings
    roles = [*api.roles, api.admin_role]
    if role not in roles:
        raise ConfigError(
            f"the role {role!r} is not in api.roles of {project.source_file} ({', '.join(roles)}).{did_you_mean(role, roles)}"
        )


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group("api-key")
def api_key() -> None:
    """Create, list and revoke the data API's keys (stored hashed in the project's state store)."""


@api_key.command()
@click.argument("path", type=click.Path(), default=".")
@click.option("--role", required=True, help="The role the key acts as (one of api.roles, or api.admin_role).")
@click.option("--owner", help="Who the key belongs to: its subject (claim `sub`). Default: your login name.")
@click.option("--expires", help="Expiry: a duration from now (30d, 12h, 90m, 2w) or an ISO date/time. Default: never.")
@click.option("--state", "state_url", help="State store URL (default: the project's).")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
def create(path: str, role: str, owner: str | None, expires: str | None, state_url: str | None, as_json: bool) -> None:
    """Create a key for ROLE; the key is printed once and cannot be shown again."""
    project, store = _open(path, state_url)
    try:
        _check_role(project, role)
        now = time.time()
        expires_at = parse_expiry(expires, now) if expires else None
        record, key = store.create(role, owner or getpass.getuser(), expires_at)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"key": key, **record.as_json(now)}))
        return
    click.echo(key)
    until = f", expires {_when(record.expires_at)}" if record.expires_at else ""
    click.echo(
        f"created API key {record.key_id} (role {record.role}, owner {record.owner}{until}); "
        "store it now: it is shown only once. Send it as 'X-API-Key: <key>'.",
        err=True,
    )


@api_key.command(name="list")
@click.argument("path", type=click.Path(), default=".")
@click.option("--state", "state_url", help="State store URL (default: the project's).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the keys (never the keys themselves).")
def list_keys(path: str, state_url: str | None, as_json: bool) -> None:
    """List the keys: id, role, owner, times and state (active, expired, revoked)."""
    with ExitStack() as reading:
        _project, store = _open(path, state_url, reading)
        try:
            records = store.all()
        finally:
            store.close()
    now = time.time()
    if as_json:
        click.echo(json.dumps([record.as_json(now) for record in records]))
        return
    if not records:
        click.echo("no API keys; create one with 'sluice api-key create --role ROLE'", err=True)
        return
    rows = [("ID", "ROLE", "OWNER", "CREATED", "EXPIRES", "REVOKED", "STATE")]
    rows += [
        (r.key_id, r.role, r.owner, _when(r.created_at), _when(r.expires_at), _when(r.revoked_at), r.state(now)) for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@api_key.command()
@click.argument("key_id")
@click.argument("path", type=click.Path(), default=".")
@click.option("--state", "state_url", help="State store URL (default: the project's).")
def revoke(key_id: str, path: str, state_url: str | None) -> None:
    """Revoke the key KEY_ID (its id, as 'list' shows it): every request with it is refused from then on."""
    _project, store = _open(path, state_url)
    try:
        record = store.revoke(key_id.strip())
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    finally:
        store.close()
    click.echo(f"revoked API key {record.key_id} (role {record.role}, owner {record.owner}) at {_when(record.revoked_at)}")
