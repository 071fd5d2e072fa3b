"""``sluice backfill PATH --from DATE --to DATE``: one run per logical date, resumable (docs/backfills.md)."""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sluice.cli.options import workers_option
from sluice.errors import ConfigError, SluiceError, ValidationFailed, did_you_mean
from sluice.project.model import Project
from sluice.runtime.summary import RunOptions
from sluice.scheduling.backfills import backfill_json
from sluice.state.base import BackfillDate

if TYPE_CHECKING:
    from sluice.scheduling.backfills import Backfills
    from sluice.scheduling.launch import InProcessRuns

USER_ERROR = 2
LEASE_LOST = 3
"""Exit status when another process took over the backfill's lease while this one ran it (docs/backfills.md)."""
INTERRUPTED = 130


def resolve_targets(project: Project, given: tuple[str, ...]) -> tuple[int, ...] | None:
    """``--target`` values (object ids or names) as ids; None when none is given. Raises ConfigError."""
    from sluice.scheduling.spec import resolve_targets as resolve

    ids, problem = resolve(project.objects, list(given) or None, None)
    if problem is not None:
        raise ConfigError(f"--target: {problem}; see 'sluice plan PATH'")
    return ids


def schedule_of(project: Project, name: str) -> tuple[str, str, tuple[int, ...] | None]:
    """The cron, time zone and targets of the project's schedule ``name``. Raises ConfigError."""
    schedules = {s.name: s for s in project.schedules}
    if name not in schedules:
        known = ", ".join(sorted(schedules)) or "none defined"
        raise ConfigError(f"--schedule {name}: no such schedule (schedules: {known}).{did_you_mean(name, list(schedules))}")
    spec = schedules[name]
    return spec.cron, spec.timezone, spec.targets


def _day(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a date; write YYYY-MM-DD") from None


def date_line(item: BackfillDate, settled: int, total: int) -> str:
    """One line per settled date: ``[3/31] 2026-01-03  succeeded  run r-... 1.20s``."""
    took = f"{item.finished_at - item.started_at:.2f}s" if item.finished_at and item.started_at else "-"
    error = f"  {item.error}" if item.error and item.status == "failed" else ""
    width = len(str(total))
    return f"[{settled:>{width}}/{total}] {item.logical_date}  {item.status:<9} run {item.run_id or '-'}  {took}{error}"


@click.command()
@click.argument("path", type=click.Path())
@click.option("--from", "start", metavar="DATE", help="First logical date (YYYY-MM-DD).")
@click.option("--to", "end", metavar="DATE", help="Last logical date, included (YYYY-MM-DD).")
@click.option(
    "--target", "targets", multiple=True, metavar="ID|NAME", help="Object to produce (repeatable; default: the final objects)."
)
@click.option("--schedule", help="Run this schedule's ticks in the range (its cron, time zone and targets) instead of days.")
@click.option(
    "--timezone",
    help="Time zone of the days' midnights and of their {{ ds }} (IANA name; default UTC; with --schedule: the schedule's).",
)
@click.option(
    "--parallel", type=click.IntRange(min=1), help="Dates run at once (default 1; a resumed backfill: as it was started)."
)
@click.option("--resume", "resume_id", metavar="ID", help="Continue this backfill: its dates not yet succeeded.")
@click.option("--new", "fresh", is_flag=True, help="Start a new backfill even if an unfinished one has the same dates.")
@click.option("--force", is_flag=True, help="Run every planned object of each date even if fresh.")
@click.option("--list", "list_only", is_flag=True, help="List the project's backfills instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the backfill (and its dates) as JSON at the end.")
@click.option("--simulate", is_flag=True, help="Objects without work sleep their stage's delay (as 'sluice run').")
@click.option("--delay-scale", type=float, default=1.0, show_default=True, help="Multiply simulated delays (0 = none).")
@click.option("--fail", "fail_ids", multiple=True, type=int, help="Force this object to fail in every run (repeatable).")
@workers_option
@click.option("--bus", "bus_url", help="Bus URL (default: embedded log in .sluice/).")
@click.option("--state", "state_url", help="State store URL (default: sqlite file in .sluice/).")
def backfill(
    path: str,
    start: str | None,
    end: str | None,
    targets: tuple[str, ...],
    schedule: str | None,
    timezone: str | None,
    parallel: int | None,
    resume_id: str | None,
    fresh: bool,
    force: bool,
    list_only: bool,
    as_json: bool,
    simulate: bool,
    delay_scale: float,
    fail_ids: tuple[int, ...],
    workers: str,
    bus_url: str | None,
    state_url: str | None,
) -> None:
    """Run the project once per logical date from --from to --to (each day, or a schedule's ticks).

    Dates run in order (--parallel N: up to N at once); a failed date is reported and the others go on (exit 1 at
    the end). Interrupted, it resumes with --resume ID, or by running the same command again (same dates and
    targets: the unfinished backfill is continued, its succeeded dates not run again; --new starts afresh).
    """
    from sluice.project.load import load_project
    from sluice.runtime.run import WorkersMode
    from sluice.scheduling.backfills import Backfills, BackfillSpec, check_parallel, logical_dates, shared_objects
    from sluice.scheduling.launch import InProcessRuns
    from sluice.state.registry import open_state

    try:
        project = load_project(path)
        if resume_id is not None and (start or end):  # the backfill's own dates are run, not a range given here
            given = " ".join(f for f, v in (("--from", start), ("--to", end)) if v)
            raise ConfigError(
                f"--resume {resume_id} runs that backfill's own dates not yet succeeded; drop {given} "
                "(or start a new backfill with --from and --to, without --resume)"
            )
        if list_only:  # only reads: a project that never ran is left without a .sluice/ folder
            from sluice.runtime.reading import reading_state

            with reading_state(project, state_url) as reading:
                _list(Backfills(reading, project.name), as_json)
            return
        state = open_state(state_url or project.resolve_state_url(), project.root)
    except (ValidationFailed, SluiceError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    asked = RunOptions(force=force, simulate=simulate, delay_scale=delay_scale, fail=frozenset(fail_ids))
    try:
        backfills = Backfills(state, project.name)
        if resume_id is not None:
            record = state.get_backfill(resume_id)
            if record.project != project.name:
                raise ConfigError(f"backfill {resume_id} belongs to project '{record.project}', not '{project.name}'")
        else:
            if delay_scale < 0:
                raise ConfigError("--delay-scale must be >= 0")
            if not start or not end:
                raise ConfigError("give --from DATE and --to DATE (or --resume ID, or --list)")
            cron, tz_name, chosen = None, timezone or "UTC", resolve_targets(project, targets)
            if schedule is not None:
                cron, tz_name, schedule_targets = schedule_of(project, schedule)
                chosen = chosen if chosen is not None else schedule_targets
                if timezone is not None and timezone != tz_name:  # its ticks (and their {{ ds }}) are in its zone
                    raise ConfigError(
                        f"--timezone {timezone}: schedule '{schedule}' runs in its own time zone, {tz_name}; "
                        f"drop --timezone (or give {tz_name})"
                    )
            try:
                tz = ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"--timezone {tz_name!r} is not an IANA time zone name (e.g. Europe/Paris)") from None
            spec = BackfillSpec(_day(start, "--from"), _day(end, "--to"), chosen, schedule, cron, parallel or 1, tz_name)
            dates = logical_dates(spec.start, spec.end, cron, tz)
            check_parallel(project, spec.targets, spec.parallel)  # before a backfill is recorded
            found = None if fresh else backfills.unfinished(spec)
            if found is not None:
                click.echo(f"resuming backfill {found.backfill_id} (same dates and targets; --new starts afresh)", err=True)
            else:  # refused before anything is recorded: a backfill sharing a date with one being run
                backfills.refuse_overlap([d.isoformat() for d in dates])
            record = found or backfills.create(spec, dates, asked.as_dict())
        kept = record.spec.get("options")  # a resumed backfill runs as it was started (--force, --simulate...)
        defaults = asked.with_recorded(kept) if isinstance(kept, dict) else asked
        if defaults.as_dict() != asked.as_dict():
            click.echo(f"backfill {record.backfill_id} runs with the options it was started with: {_flags(defaults)}", err=True)
        if parallel is None:
            kept_parallel = record.spec.get("parallel")
            parallel = kept_parallel if isinstance(kept_parallel, int) and kept_parallel > 0 else 1
        kept_targets = record.spec.get("targets")
        check_parallel(project, tuple(kept_targets) if isinstance(kept_targets, list) else None, parallel)
        left = [d.logical_date for d in state.backfill_dates(record.backfill_id) if d.status != "succeeded"]
        backfills.refuse_overlap(left, record.backfill_id)
        click.echo(f"backfill {record.backfill_id}: {len(left)} date(s) to run, {parallel} at once", err=True)
        shared = shared_objects(project, tuple(kept_targets) if isinstance(kept_targets, list) else None)
        first_alone = parallel > 1 and bool(shared) and not defaults.force
        if first_alone:
            names = ", ".join(f"{oid} ({project.objects[oid].name})" for oid in sorted(shared)[:3])
            more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
            click.echo(
                f"objects {names}{more} do not depend on the date: the first date runs them alone, the others find them fresh",
                err=True,
            )
        on_date = None if as_json else lambda item, settled, total: click.echo(date_line(item, settled, total))
        try:
            mode: WorkersMode = "external" if workers == "external" else "in-process"
            with InProcessRuns(project, defaults, workers=mode, bus_url=bus_url, state_url=state_url) as runs:
                _stop_on_interrupt(backfills, runs, f"sluice backfill {path} --resume {record.backfill_id}")
                final = backfills.run(record.backfill_id, runs, parallel, on_date, first_alone=first_alone)
        except KeyboardInterrupt:
            click.echo(f"interrupted; continue with: sluice backfill {path} --resume {record.backfill_id}", err=True)
            sys.exit(INTERRUPTED)
        if (
            final.status == "running" and backfills.lost.is_set()
        ):  # paused past its lease's expiry while another process took the backfill over
            click.echo(
                f"error: backfill {record.backfill_id}: another process took over its lease while this one ran it, so "
                f"no more dates started here (the dates that were running finished); it runs the rest (sluice "
                f"backfill {path} --list); if it stopped, continue with: sluice backfill {path} --resume "
                f"{record.backfill_id}",
                err=True,
            )
            sys.exit(LEASE_LOST)
        if final.status == "running":  # stopped by an interrupt: resumable
            click.echo(f"stopped; continue with: sluice backfill {path} --resume {record.backfill_id}", err=True)
            sys.exit(INTERRUPTED)
        dates_now = state.backfill_dates(record.backfill_id)
        if as_json:
            click.echo(json.dumps(backfill_json(final, dates_now)))
        else:
            failed = [d.logical_date for d in dates_now if d.status == "failed"]
            click.echo(f"backfill {final.backfill_id} {final.status}: {len(dates_now) - len(failed)} of {len(dates_now)} "
                       f"dates succeeded" + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
        sys.exit(0 if final.status == "succeeded" else 1)
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    finally:
        state.close()


def _flags(options: RunOptions) -> str:
    """The run options as the flags that give them (``--force --simulate --delay-scale 0.5 --fail 2005``), or
    ``none``."""
    given = ["--force"] * options.force + ["--simulate"] * options.simulate
    given += [f"--delay-scale {options.delay_scale:g}"] * (options.delay_scale != 1.0)
    given += [f"--fail {oid}" for oid in sorted(options.fail)]
    return " ".join(given) or "none"


def _stop_on_interrupt(backfills: Backfills, runs: InProcessRuns, resume: str) -> None:
    """First Ctrl-C (or SIGTERM): start no more dates, let the running ones finish; second: cancel them; third:
    stop at once. The backfill stays resumable."""
    presses = [0]

    def handler(signum: int, frame: object) -> None:
        presses[0] += 1
        if presses[0] == 1:
            click.echo("stopping: no more dates start, the running ones finish (interrupt again to cancel them)", err=True)
            backfills.stop()
        elif presses[0] == 2:
            click.echo(f"cancelling the running dates; continue later with: {resume}", err=True)
            runs.cancel()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _list(backfills: Backfills, as_json: bool) -> None:
    records = backfills.state.list_backfills(backfills.project)
    all_dates = backfills.state.backfills_dates([r.backfill_id for r in records])  # one query, as GET /backfills
    if as_json:
        click.echo(json.dumps([backfill_json(r, all_dates[r.backfill_id]) for r in records]))
        return
    if not records:
        click.echo("no backfills")
    from sluice.scheduling.backfill_lease import live_holder

    now = time.time()
    for r in records:
        dates = all_dates[r.backfill_id]
        # "running" is the record's until it ends: one no process runs now (its lease free) was stopped part-way
        status = r.status
        if status == "running" and live_holder(backfills.state, backfills.project, r.backfill_id, now) is None:
            status = "stopped"
        done = sum(1 for d in dates if d.status == "succeeded")
        spec = r.spec
        when = datetime.fromtimestamp(r.created_at).isoformat(timespec="seconds")
        click.echo(f"{r.backfill_id}  {status:<9} {spec.get('from')}..{spec.get('to')}  {done}/{len(dates)} succeeded  {when}")
