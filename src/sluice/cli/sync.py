"""``sluice sync``: run a sync (``sluice sync PATH`` is ``sluice sync run PATH``), its status, resync and drop.

Layout: a click group whose first argument, when it is not one of its commands, is taken as ``run``'s PATH,
so ``sluice sync PATH --once`` and ``sluice sync status PATH`` both read naturally.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import msgspec

from sluice.cdc.status import with_path
from sluice.cli.tuning import tune_gc
from sluice.errors import ConfigError, SluiceError, ValidationFailed
from sluice.observability.logs import setup_logging
from sluice.project.load import load_project
from sluice.project.model import Project, SyncSpec

if TYPE_CHECKING:
    from sluice.bus.base import Bus
    from sluice.cdc.child_metrics import ChildMetrics
    from sluice.cdc.runtime import SyncRuntime
    from sluice.cdc.status import SyncStatus

USER_ERROR = 2
PROGRESS_EVERY_S = 2.0


class _RunByDefault(click.Group):
    """``sluice sync PATH ...`` runs ``sluice sync run PATH ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _load(path: str, name: str | None) -> tuple[Project, SyncSpec]:
    project, specs = _load_all(path, name, every=False)
    return project, specs[0]


def _load_all(path: str, name: str | None, *, every: bool = True) -> tuple[Project, list[SyncSpec]]:
    """The project and the sync called ``name``; without a name, the only sync, or (``every``) all of them in file order.
    Exits 2 with one line on a project that does not load or names no such sync."""
    try:
        project = load_project(path)
        if name is None and every and project.syncs:
            return project, list(project.syncs)
        return project, [project.sync(name)]
    except ValidationFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)


def _split(processes: str, role: str, spec: SyncSpec) -> bool:
    """Whether to run capture in a child process: asked for, or ``auto`` on a one-way sync with several cores.

    Both-ways syncs stay in one process: newer-wins conflict resolution reads the commit times the same
    process's capture saw (:mod:`sluice.cdc.conflicts`)."""
    if role != "both" or processes == "1":
        return False
    if processes == "2":
        return True
    return spec.settings.direction == "one-way" and (os.cpu_count() or 1) >= 2


def _watch_child(
    child: subprocess.Popen[bytes], once: bool, on_exit: Callable[[], None], figures: ChildMetrics | None = None
) -> Callable[[], bool]:
    """A ``capture_running`` check for :class:`~sluice.cdc.runtime.SyncRuntime`: True while ``child`` runs.

    Calls ``on_exit`` (stop this process) once when the child fails, or when it ends at all without ``once``
    (``--once`` or ``snapshot: initial_only``, whose capture ends by itself; else apply alone would wait for
    changes nobody captures). ``figures``: the child's metrics, mirrored each status interval while it runs
    and once more when it has ended (its last status file)."""
    reported = ended = False

    def running() -> bool:
        nonlocal reported, ended
        code = child.poll()
        if code is None:
            if figures is not None:
                figures.poll()
            return True
        if figures is not None and not ended:
            ended = True
            figures.read()
        if (code != 0 or not once) and not reported:
            reported = True
            on_exit()
        return False

    return running


def _die_with_parent() -> None:
    """In the capture child, before exec: ask Linux to SIGTERM it when this (apply) process dies, even by
    ``kill -9`` (``prctl(PR_SET_PDEATHSIG)``), so no orphan capture keeps running."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


CHILD_STOP_DEADLINE_S = 30.0
"""Seconds a capture child has to stop after SIGTERM (:func:`_stop_child` kills it then; a child whose parent died
ends itself then: :func:`_exit_later`)."""


def _exit_later(seconds: float) -> None:
    """End this process (exit status 1, no clean-up) in ``seconds`` unless it ended before: a capture child whose
    parent died stops within :data:`CHILD_STOP_DEADLINE_S` even when a read it waits on does not return, as a killed
    process would (every position is kept for a restart: ``kill -9`` is safe at any moment)."""
    import threading

    timer = threading.Timer(seconds, os._exit, (1,))
    timer.daemon = True
    timer.start()


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the capture process if it still runs, and wait for it (SIGKILL after 30 s)."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(CHILD_STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@click.group("sync", cls=_RunByDefault, context_settings={"help_option_names": ["-h", "--help"]})
def sync() -> None:
    """Keep tables in sync between two databases by change-data capture (the project's ``syncs:``).

    ``sluice sync PATH`` runs a sync (same as ``sluice sync run PATH``)."""


@sync.command("run")
@click.argument("path", type=click.Path())
@click.option("--name", help="The sync to run (default: the only one).")
@click.option("--once", is_flag=True, help="Snapshot if needed, apply what the source holds now, then exit.")
@click.option("--resnapshot", is_flag=True, help="Forget positions, empty the target tables and copy them again.")
@click.option(
    "--role",
    type=click.Choice(["both", "capture", "apply"]),
    default="both",
    show_default=True,
    help="Run capture, apply or both in this process (separate processes need a shared bus such as Kafka).",
)
@click.option("--bus", "bus_url", help="Bus URL (default: the project's, else the embedded log in .sluice/).")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Apply threads per direction.")
@click.option(
    "--processes",
    type=click.Choice(["auto", "1", "2"]),
    default="auto",
    show_default=True,
    help="2: capture runs in a child process and apply in this one (two cores); auto: 2 for a one-way sync "
    "with --role both on a machine with several cores.",
)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Expose Prometheus metrics on PORT (at /metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint listens on.")
@click.option("--log-level", default="warning", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True)
def run(
    path: str,
    name: str | None,
    once: bool,
    resnapshot: bool,
    role: str,
    bus_url: str | None,
    workers: int,
    processes: str,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
) -> None:
    """Run a sync until stopped (Ctrl-C or SIGTERM stop it cleanly; a restart resumes where it was)."""
    from sluice.bus.registry import open_bus
    from sluice.cdc.capture_lock import CAPTURE_CHILD_ENV
    from sluice.cdc.runtime import SyncRuntime
    from sluice.cli.progress import make_console
    from sluice.observability import metrics

    setup_logging("text", log_level)
    project, spec = _load(path, name)
    tune_gc()
    if metrics_port:
        metrics.serve(metrics_port, metrics_host)
    console = make_console()
    shown: dict[str, float] = {}

    def progress(direction: str, table: str, rows: int, total: int | None, seconds: float, read: int, done: bool) -> None:
        now = time.monotonic()
        if not done and now - shown.get(table, 0.0) < PROGRESS_EVERY_S:
            return
        shown[table] = now
        of = f" of ~{total:,}" if total and not done else ""  # the total is the catalog's estimate
        rate = f" ({read / seconds:,.0f} rows/s)" if seconds > 0 and read else ""  # this run's: a resumed one read less
        console.print(f"snapshot {table} ({direction}): {rows:,}{of} rows{' (done)' if done else ''}{rate}", highlight=False)

    bus = open_bus(bus_url or project.resolve_bus_url(), project.root)
    split = _split(processes, role, spec)
    # Capture and apply are each bound to one core by Python's GIL: split, capture runs in a child process.
    roles = ("apply",) if split else ("capture", "apply") if role == "both" else (role,)
    finite = once or spec.settings.snapshot == "initial_only"  # the run ends by itself: a child may end first
    child: subprocess.Popen[bytes] | None = None
    figures: ChildMetrics | None = None
    if split:
        from sluice.cdc.capture_lock import capture_holder

        sides = [spec.settings.source] + ([spec.settings.target] if spec.settings.direction == "both" else [])
        refusal = next(filter(None, (capture_holder(project.work_dir, spec.settings.name, s) for s in sides)), None)
        if refusal is not None:  # before the child starts: this process's apply would join the running one's
            bus.close()
            click.echo(f"error: {refusal}", err=True)
            sys.exit(USER_ERROR)
    runtime = SyncRuntime(
        spec.settings,
        dict(spec.urls),
        bus,
        project.work_dir,
        roles=roles,
        once=once,
        resnapshot=resnapshot and not split,
        workers=workers,
        on_progress=progress,
        origin=spec.origin,
    )
    runtime.state.shown_path = path  # the resync advice of a stopped table's log line names this project

    stopping = os.environ.get(CAPTURE_CHILD_ENV) == "1"  # a capture child: its parent says it (once)

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:  # Ctrl-C, then the SIGTERM of a dying parent or a second Ctrl-C: one line
            stopping = True
            click.echo("stopping the sync (positions are kept; a restart resumes)", err=True)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
        if os.environ.get(CAPTURE_CHILD_ENV) == "1" and os.getppid() != parent_pid:
            _exit_later(CHILD_STOP_DEADLINE_S)  # nobody is left to enforce _stop_child's deadline: do it here
        runtime.stop()

    parent_pid = os.getppid()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    preflight(runtime, bus, path)  # before the child starts
    if split and not runtime.state.stop.is_set():  # not stopped during the preflight
        from sluice.cdc.child_metrics import ChildMetrics

        command = [sys.executable, "-m", "sluice", "sync", "run", path, "--name", spec.settings.name, "--role", "capture"]
        command += ["--processes", "1", "--log-level", log_level]
        command += (["--once"] if once else []) + (["--resnapshot"] if resnapshot else [])
        command += ["--bus", bus_url] if bus_url else []
        child = subprocess.Popen(
            command,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            env={**os.environ, CAPTURE_CHILD_ENV: "1"},
        )
        # The child serves no metrics: this process exports its capture figures (read from its status file).
        figures = ChildMetrics(project.work_dir, spec.settings.name, child.pid, lambda d, t: runtime.state.stopped(d, t))
        runtime.capture_running = _watch_child(child, finite, lambda: runtime.stop(), figures)

    try:
        shown_roles = ", ".join(roles) + (f"; capture in process {child.pid}" if child is not None else "")
        if os.environ.get(CAPTURE_CHILD_ENV) != "1":  # the parent's line names the child already
            console.print(f"sync {spec.settings.name}: {_route(spec)} ({shown_roles})", highlight=False)
        status = runtime.run()
    except SluiceError as exc:
        click.echo(f"error: {with_path(str(exc), path)}", err=True)
        sys.exit(USER_ERROR)
    finally:
        bus.close()
        if child is not None:
            _stop_child(child)
        if figures is not None:
            figures.read()  # the child's last figures (it writes its file as it stops)
    if child is not None and child.returncode not in (0, -signal.SIGTERM):
        sys.stdout.flush()
        click.echo(child_failed(child.returncode), err=True)
        sys.exit(child.returncode if child.returncode > 0 else 1)
    problems, summary = final_report(status, runtime.apply_options.namespace, captured_only="apply" not in roles, path=path)
    for line in problems:
        click.echo(line, err=True)
    console.print(summary)
    sys.exit(1 if problems else 0)


def preflight(runtime: SyncRuntime, bus: Bus, path: str) -> None:
    """Check the sync against its databases before anything starts (:meth:`SyncRuntime.preflight`, the checks of
    ``sluice validate --live``): on problems, exit 2 with each at its line as validate prints them; else print the
    notes (not in a capture child: its parent printed them)."""
    from sluice.cdc.capture_lock import CAPTURE_CHILD_ENV

    try:
        problems = runtime.preflight()
    except SluiceError as exc:  # a server that cannot be reached
        runtime.close()
        bus.close()
        click.echo(f"error: {with_path(str(exc), path)}", err=True)
        sys.exit(USER_ERROR)
    if problems:
        runtime.close()
        bus.close()
        click.echo(f"error: {runtime.refusal(problems)}", err=True)
        sys.exit(USER_ERROR)
    if os.environ.get(CAPTURE_CHILD_ENV) != "1":
        for note in runtime.notes:
            click.echo(f"note: {note}", err=True)


def _route(spec: SyncSpec) -> str:
    """``my -> pg, into schema public``: where the tables go (``target_namespace``, else the target URL's default,
    easy to miss on a shared warehouse); both ways ``my <-> pg``."""
    from sluice.cdc.tables import default_target_namespace
    from sluice.urls import connection_scheme

    settings = spec.settings
    url = spec.urls[settings.target]
    where = settings.target_namespace or default_target_namespace(url)
    kind = "database" if connection_scheme(url) in ("mysql", "mariadb") else "schema"
    arrow = "<->" if settings.direction == "both" else "->"
    return f"{settings.source} {arrow} {settings.target}, into {kind} {where}"


def child_failed(code: int) -> str:
    """The parent's line when the capture child failed: on a line of its own (the child's message, written
    to the same terminal, may not have ended its line), after a blank one."""
    return f"\nerror: the capture process exited with status {code} (its message is above)"


def final_report(
    status: SyncStatus, namespace: str = "sluice_cdc", *, captured_only: bool = False, path: str = "PATH"
) -> tuple[list[str], str]:
    """``(one line per table in error, the summary line)`` printed when ``sluice sync run`` stops; the summary
    counts applied row changes (``captured_only``, a process that only captures: captured ones, snapshot rows
    included), tables in error and, when not zero, conflicts (recorded in ``<namespace>.conflicts``), dead
    letters (rows the target refused, kept in ``<namespace>.dead_letters``) and invalid dates (zero or invalid
    dates capture turned into NULL: counted where capture runs). A table's line says to resync it (with the
    project's ``path``) unless its error says so already."""
    errors = [t for t in status.tables if t.state == "error"]
    problems = [
        f"table {t.source_table} stopped: {with_path(t.error, path)}"
        if "sluice sync resync" in t.error
        else f"table {t.source_table} stopped: {t.error} (fix it, then 'sluice sync resync {shlex.quote(path)} {t.source_table}')"
        for t in errors
    ]
    if captured_only:
        captured = sum(sum(t.captured.values()) for t in status.tables)
        summary = f"capture of sync {status.name} stopped: {captured:,} row changes captured, {len(errors)} table(s) in error"
    else:
        applied = sum(sum(t.applied.values()) for t in status.tables)
        summary = f"sync {status.name} stopped: {applied:,} row changes applied, {len(errors)} table(s) in error"
    conflicts = sum(t.conflicts for t in status.tables)
    dead = sum(t.dead_letters for t in status.tables)
    invalid = sum(t.invalid_dates for t in status.tables)
    if conflicts:
        summary += f", {conflicts:,} conflict(s) (see {namespace}.conflicts)"
    if dead:
        summary += f", {dead:,} dead letter(s) (see {namespace}.dead_letters)"
    if invalid:
        summary += f", {invalid:,} invalid date(s) written as NULL"
    return problems, summary


@sync.command("status")
@click.argument("path", type=click.Path())
@click.option("--name", help="The sync (default: every sync of the file, in order).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (several syncs: a JSON array of them).")
def status(path: str, name: str | None, as_json: bool) -> None:
    """Per table: state, position, lag, rows applied by operation, conflicts, dead letters, invalid dates (from the running sync).

    Counts cover the current (or last) run of the sync process only; totals are in the target's
    ``<namespace>.dead_letters`` and ``<namespace>.conflicts`` tables. Without ``--name``, every sync of the file,
    one after the other (a sync that has not run yet is said so); exit 2 when none has run, or ``--name``'s has not."""
    from sluice.cdc.status import read_status

    project, specs = _load_all(path, name)
    found: list[SyncStatus] = []
    for spec in specs:
        current = read_status(project.work_dir, spec.settings.name)
        if current is None:
            message = f"sync {spec.settings.name} has not run yet (no status in {project.work_dir / 'syncs'})"
            click.echo(f"{'error' if len(specs) == 1 else 'note'}: {message}", err=True)
            continue
        found.append(current)
    if not found:
        sys.exit(USER_ERROR)
    if as_json:
        click.echo(msgspec.json.encode(found[0] if len(specs) == 1 else found).decode())
        return
    for current in found:
        _print_status(current, path)


def _print_status(current: SyncStatus, path: str) -> None:
    """One sync's status: a line for the process, a table of its tables (their errors' advice written for the
    project at ``path``)."""
    from rich.table import Table

    from sluice.cli.progress import make_console

    console = make_console()
    age = time.time() - current.updated_at
    if current.gone:  # killed or crashed: its file still said it ran
        shown = f"not running (pid {current.pid} gone; {current.direction}, updated {age:.0f} s ago)"
    elif any(p.running for p in current.processes) and (len(current.processes) > 1 or current.roles_not_running):
        shown = f"{current.state} ({current.direction}; {_roles_shown(current)}; updated {age:.0f} s ago)"
    else:
        shown = f"{current.state} ({current.direction}, pid {current.pid}, updated {age:.0f} s ago)"
    console.print(f"sync {current.name}: {shown}" + (f": {current.error}" if current.error else ""))
    columns = ("direction", "table", "state", "position", "lag s", "applied", "captured", "conflicts", "dead", "invalid dates")
    table = Table(*columns, "snapshot")
    for t in current.tables:
        estimate = t.snapshot_total if t.snapshot_total and t.snapshot_rows < t.snapshot_total else None
        snap = f"{t.snapshot_rows:,}" + (f" of ~{estimate:,}" if estimate else "")
        table.add_row(
            t.direction,
            f"{t.source_table} -> {t.target_table}",
            t.state + (f" ({t.note})" if t.note else "") + (f": {with_path(t.error, path)}" if t.error else ""),
            t.position,
            "" if t.lag_s is None else f"{t.lag_s:.1f}",
            _counts(t.applied),
            _counts(t.captured),
            str(t.conflicts),
            str(t.dead_letters),
            str(t.invalid_dates),
            snap,
        )
    console.print(table)


def _roles_shown(current: SyncStatus) -> str:
    """``capture running, pid 11; apply not running: pid 12 gone``: per role, its running processes, else the
    last of those that ran (or none: ``apply not running``)."""
    parts: list[str] = []
    for kind in ("capture", "apply"):
        processes = [p for p in current.processes if any(r.startswith(f"{kind}:") for r in p.roles)]
        live = [p for p in processes if p.running]
        if live:
            parts.append(f"{kind} running, pid{'s' if len(live) > 1 else ''} " + ", ".join(str(p.pid) for p in live))
        elif processes:
            last = processes[-1]
            parts.append(f"{kind} not running: pid {last.pid} {'gone' if last.gone else last.state}")
        elif any(r.startswith(f"{kind}:") for r in current.roles_not_running):
            parts.append(f"{kind} not running")
    return "; ".join(parts)


def _counts(counts: dict[str, Any]) -> str:
    return " ".join(f"{op} {n:,}" for op, n in sorted(counts.items())) or "-"


@sync.command("resync")
@click.argument("path", type=click.Path())
@click.argument("table")
@click.option("--name", help="The sync (default: the only one).")
def resync(path: str, table: str, name: str | None) -> None:
    """Empty TABLE (a source table, namespace.name) in the target and copy it again; clears its error."""
    from sluice.cdc.state import request_resync, resync_name
    from sluice.cdc.status import read_status

    project, spec = _load(path, name)
    status = read_status(project.work_dir, spec.settings.name)
    tables = status.tables if status is not None else []
    forward = [t.source_table for t in tables if t.direction.startswith(f"{spec.settings.source} ->")]
    copies = [t.source_table for t in tables if t.source_table not in forward]  # both ways: the target side's
    try:
        table = resync_name(table, forward or copies, spec.settings.name, copies if forward else [])
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    request_resync(project.work_dir, spec.settings.name, table)
    click.echo(f"resync of {table} requested: the running sync (or its next start) resets and copies it again")


@sync.command("drop")
@click.argument("path", type=click.Path())
@click.option("--name", help="The sync (default: the only one).")
def drop(path: str, name: str | None) -> None:
    """Remove what capture created on the sources (PostgreSQL replication slot and publication)."""
    from sluice.bus.registry import open_bus
    from sluice.cdc.runtime import SyncRuntime

    project, spec = _load(path, name)
    bus = open_bus(project.resolve_bus_url(), project.root)
    try:
        SyncRuntime(spec.settings, dict(spec.urls), bus, project.work_dir).drop()
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
    finally:
        bus.close()
    click.echo(f"sync {spec.settings.name}: capture objects dropped from the sources")


@sync.command("verify")
@click.argument("path", type=click.Path())
@click.option("--name", help="The sync (default: the only one).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(path: str, name: str | None, as_json: bool) -> None:
    """Compare each source table with its target (counts and per-chunk checksums in the databases)."""
    from sluice.cdc.runtime import plugin_capture, plugin_options
    from sluice.cdc.tables import default_target_namespace, resolve_tables
    from sluice.cli.sync_verify import verify_and_report

    _, specs = _load_all(path, name)
    equal = True
    for spec in specs:
        settings, urls = spec.settings, dict(spec.urls)
        options = plugin_options("capture", urls[settings.source], dict(settings.capture), f"sync '{settings.name}' capture")
        capture = plugin_capture(urls[settings.source], options, settings.name, settings.source, None)
        try:
            namespace = settings.target_namespace or default_target_namespace(urls[settings.target])
            refs, _problems = resolve_tables(settings, capture.list_tables(), namespace)
        finally:
            capture.close()
        source, target = (settings.source, urls[settings.source]), (settings.target, urls[settings.target])
        equal = verify_and_report(settings.name, source, target, refs, json_output=as_json) and equal
    sys.exit(0 if equal else 1)
