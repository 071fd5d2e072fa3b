"""``sluice check PATH [--object ID]``: run objects' data-quality checks on their current output, without running
them (docs/checks.md). One line per check; exit status 1 when a check of severity ``error`` did not pass."""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

import click

from sluice.cli.options import log_options
from sluice.errors import SluiceError, ValidationFailed

if TYPE_CHECKING:
    from sluice.project.model import Project
    from sluice.state.base import CheckResult, StateStore


@click.command()
@click.argument("path", type=click.Path())
@click.option("--object", "object_ids", multiple=True, type=int, help="An object whose checks to run (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
@click.option("--no-store", is_flag=True, help="Do not keep the results (metrics.check_results or the state store).")
@click.option("--results", is_flag=True, help="Show kept results (newest first) instead of running the checks.")
@click.option("--run", "run_id", help="With --results: only this run's.")
@click.option("--limit", default=50, show_default=True, help="With --results: at most this many.")
@click.option("--state", "state_url", help="State store URL (default: sqlite file in .sluice/).")
@log_options
def check(
    path: str,
    object_ids: tuple[int, ...],
    as_json: bool,
    no_store: bool,
    results: bool,
    run_id: str | None,
    limit: int,
    state_url: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the checks of the project's objects (or of --object ID) on their current output, where it is."""
    import dataclasses

    from sluice.checks.run import CheckRunner, coverage, describe
    from sluice.checks.store import load_results
    from sluice.lake.registry import open_lake
    from sluice.observability.logs import setup_logging
    from sluice.project.load import load_project
    from sluice.runtime.reading import unwritten
    from sluice.state.registry import open_state

    setup_logging(log_format, log_level)
    reading = ExitStack()  # --results only reads: a state store not created yet is not created
    try:
        project = load_project(path)
        unknown = [i for i in object_ids if i not in project.objects]
        if unknown:
            raise SluiceError(f"no object {unknown[0]} in project '{project.name}'")
        chosen = [project.objects[i] for i in object_ids] or [o for o in project.objects.values() if o.checks]
        url = state_url or project.resolve_state_url()
        if results:  # only reads: a state store not created yet is not created
            state = open_state(unwritten(url, project.root, reading), project.root)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if results:
        try:
            kept = [
                r for oid in object_ids or [None] for r in load_results(project, state, run_id=run_id, object_id=oid, limit=limit)
            ]
        except SluiceError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        finally:
            state.close()
            reading.close()
        for result in kept:
            if as_json:
                click.echo(json.dumps(dataclasses.asdict(result)))
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(result.checked_at))
                run = result.run_id or "sluice check"
                click.echo(f"{when} {run} object {result.object_id} ({result.object}): {describe(result)} ({coverage(result)})")
        return
    runner = CheckRunner(project, open_lake(project))
    keeper = _Keeper(project, url, no_store)
    failed = False
    try:
        for obj in chosen:
            if not obj.checks:
                click.echo(f"object {obj.id} ({obj.name}): no checks")
                continue
            try:
                checked = runner.run(obj, "", store=False)
                keeper.keep(checked.results)
            except SluiceError as exc:
                click.echo(f"object {obj.id} ({obj.name}): {exc}")
                failed = True
                continue
            failed = failed or bool(checked.failure)
            for result in checked.results:
                if as_json:
                    click.echo(json.dumps(dataclasses.asdict(result)))
                else:
                    took = f"in {result.duration_s:.3f}s ({coverage(result)})"
                    click.echo(f"object {obj.id} ({obj.name}): {describe(result)} {took}")
    finally:
        keeper.close()
    sys.exit(1 if failed else 0)


class _Keeper:
    """Keeps check results where the rule says (``save_results``: the warehouse's ``metrics.check_results``, else the
    state store at ``url``), opening the state store only once there is something to keep in it: checks that found
    no output to check leave a project that never ran without a ``.sluice/`` folder."""

    def __init__(self, project: Project, url: str, off: bool) -> None:
        self.project, self.url, self.off = project, url, off
        self.state: StateStore | None = None

    def keep(self, results: list[CheckResult]) -> None:
        """Raises TransientError when the warehouse cannot be reached."""
        from sluice.checks.store import save_results, warehouse_url
        from sluice.state.registry import open_state

        if self.off or not results:
            return
        if self.state is None and warehouse_url(self.project) is None:
            self.state = open_state(self.url, self.project.root)
        save_results(self.project, self.state, results)

    def close(self) -> None:
        if self.state is not None:
            self.state.close()
