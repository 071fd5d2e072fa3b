"""``sluice state show|reset``: the incremental cursors the state store keeps for a project's sources.

``reset`` forgets where each ``--object`` (or every object with ``--all``) is, so that its next run reads from the
start: an incremental REST source's cursor (read from its ``initial`` value again), a batch Kafka source's consumer
group (read from ``start`` again); streaming objects are left as they are (:mod:`sluice.runtime.state_reset`,
docs/sources.md).
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack

import click

from sluice.errors import SluiceError, ValidationFailed
from sluice.project.load import parse_project
from sluice.project.model import Project
from sluice.project.yaml_tree import UnsetVariable
from sluice.state.base import StateStore

USER_ERROR = 2


def _open(path: str, state_url: str | None, reading: ExitStack | None = None) -> tuple[Project, StateStore, list[UnsetVariable]]:
    """The project, its state store and the unset variables of its connections, let pass; with ``reading``
    (``show``), a SQLite store that does not exist yet is an empty one that ``reading`` removes (nothing created in
    the project folder)."""
    from sluice.runtime.reading import unwritten
    from sluice.state.registry import open_state

    # the cursors need the project's name, objects and state store, not its connections: their unset
    # ${VARIABLES} (secrets of a database or an API) are not asked for here
    project, problems = parse_project(path)
    unset = [p for p in problems if isinstance(p, UnsetVariable) and p.where.startswith("connections.")]
    problems = [p for p in problems if p not in unset]
    if problems or project is None:
        click.echo(f"error: {ValidationFailed(problems)}", err=True)
        sys.exit(USER_ERROR)
    url = state_url or project.resolve_state_url()
    store = open_state(unwritten(url, project.root, reading) if reading is not None else url, project.root)
    return project, store, unset


@click.group()
def state() -> None:
    """The incremental cursors the state store keeps for the project's sources."""


@state.command("show")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object: cursor values by object id.")
@click.option("--state", "state_url", help="State store URL (default: the project's).")
def show(path: str, as_json: bool, state_url: str | None) -> None:
    """List the saved cursor of each incremental source."""
    with ExitStack() as reading:
        project, store, _ = _open(path, state_url, reading)
        try:
            cursors = dict(sorted(store.source_cursors(project.name).items()))
        finally:
            store.close()
    values = {object_id: _value(text) for object_id, text in cursors.items()}
    if as_json:
        click.echo(json.dumps({str(object_id): value for object_id, value in values.items()}))
        return
    if not cursors:
        click.echo(f"no saved cursors for project {project.name}", err=True)
    for object_id, value in values.items():
        name = project.objects[object_id].name if object_id in project.objects else "(no longer in the project)"
        click.echo(f"{object_id}  {name}  {json.dumps(value)}")


def _value(text: str) -> object:
    """The cursor value of a saved cursor (``{"value": ..., "schema": ...}`` as the REST source saves it)."""
    saved = json.loads(text)
    return saved.get("value") if isinstance(saved, dict) else saved


@state.command("reset")
@click.argument("path", type=click.Path())
@click.option("--object", "object_ids", multiple=True, type=int, help="Object id whose position to forget (repeatable).")
@click.option("--all", "every", is_flag=True, help="Forget where every object is (streaming objects are left as they are).")
@click.option("--state", "state_url", help="State store URL (default: the project's).")
def reset(path: str, object_ids: tuple[int, ...], every: bool, state_url: str | None) -> None:
    """Forget saved cursors and Kafka consumer groups: the next run reads those sources from the start."""
    from sluice.runtime.state_reset import reset_state, streaming_remedy

    if every == bool(object_ids):
        click.echo("error: give --object ID (repeatable) or --all", err=True)
        sys.exit(USER_ERROR)
    project, store, unset = _open(path, state_url)
    try:
        unknown = [i for i in object_ids if i not in project.objects]
        if unknown:
            click.echo(f"error: --object names unknown object id(s) {unknown}; see 'sluice plan {path}'", err=True)
            sys.exit(USER_ERROR)
        try:
            done = reset_state(project, store, None if every else list(dict.fromkeys(object_ids)), unset)
        except SluiceError as exc:  # one line: the object and what to do
            click.echo(f"error: {exc}", err=True)
            sys.exit(USER_ERROR)
    finally:
        store.close()
    if done.cursors:
        click.echo(f"reset the cursor of object(s) {', '.join(map(str, done.cursors))}; their next run reads from the start")
    for group in done.groups:
        held = ", ".join(f"{p} (at {offset})" for p, offset in group.offsets.items())
        what = f"forgot its offsets of {group.topic} partition(s) {held}" if held else "it had no committed offsets"
        start = f"its next run reads {group.topic} from its {group.start} offsets"
        click.echo(f"reset consumer group {group.group} of {group.label}: {what}; {start}")
    for obj in done.streaming:
        click.echo(f"not reset: {streaming_remedy(project, obj)}", err=True)
    if not done.cursors and not done.groups:
        click.echo("no saved cursor or consumer group to reset", err=True)
