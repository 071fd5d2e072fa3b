"""Progress of a run and the final table: live bars on a terminal, plain lines anywhere else (pipes, CI logs).

Nothing a user needs is cut: an object's error is printed whole (folded inside its table cell on a
terminal, on one line otherwise), and a stage's detail names the objects that failed or wait for a retry.
"""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from sluice import events as ev
from sluice.project.model import Project
from sluice.runtime.summary import RunSummary

PLAIN_WIDTH = 10_000
"""Columns of a console that is not a terminal: wide enough that rich never wraps a line."""


def make_console() -> Console:
    """A console for the CLI's output: the terminal's, or one that never wraps when output is piped."""
    console = Console()
    if console.is_terminal:
        return console
    return Console(width=PLAIN_WIDTH, soft_wrap=True)


STATUS_STYLE = {
    "loaded": "green",
    "failed": "red",
    "skipped": "yellow",
    "running": "cyan",
    "ready": "blue",
    "retrying": "magenta",
}


class RunProgress:
    """An observer for the coordinator: per-stage bars on a terminal, plain lines otherwise.

    Plain lines: the run's start, every failed attempt with its whole error (and whether it will be
    retried), and each stage once all its planned objects are final.
    """

    def __init__(self, project: Project, console: Console) -> None:
        self.project = project
        self.console = console
        self.live_display = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.failed: dict[str, list[int]] = {}  # stage -> objects that failed for good
        self.retrying: dict[str, dict[int, int]] = {}  # stage -> object -> next attempt
        self.started: set[int] = set()  # objects running now (a cancelled run skips them: no longer running)
        self.live = Live(Group(self.progress), console=console, refresh_per_second=8, transient=False)
        self._last = 0.0

    def __enter__(self) -> RunProgress:
        if self.live_display:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live_display:
            self._refresh(force=True)
            self.live.__exit__(None, None, None)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._start(event)
            return
        if not isinstance(event, ev.ObjectEvent):
            return
        counts = self.counts.get(event.stage)
        if counts is None:
            return
        if isinstance(event, ev.CheckFinished):
            if event.status != "passed":
                self._check(event)
            return
        retrying = self.retrying[event.stage]
        if isinstance(event, ev.ObjectStarted):
            counts["running"] += 1
            self.started.add(event.object_id)
            retrying.pop(event.object_id, None)
        elif isinstance(event, ev.ObjectLoaded | ev.ObjectFailed | ev.ObjectSkipped) and event.object_id in self.started:
            self.started.discard(event.object_id)
            counts["running"] -= 1
        if isinstance(event, ev.ObjectLoaded):
            counts["loaded"] += 1
        elif isinstance(event, ev.ObjectFailed):
            self._failed(event, retrying)
        elif isinstance(event, ev.ObjectSkipped):
            counts["fresh" if event.fresh else "skipped"] += 1
        if self.live_display:
            self._refresh()
        elif self._final(event.stage) == self.totals[event.stage]:
            self._plain(
                f"stage {event.stage}: {self._final(event.stage)}/{self.totals[event.stage]} final ({self.detail(event.stage)})"
            )

    def _failed(self, event: ev.ObjectFailed, retrying: dict[int, int]) -> None:
        will_retry = event.retryable and event.attempt < self.project.retry.attempts
        name = self.project.objects[event.object_id].name
        if will_retry:
            retrying[event.object_id] = event.attempt + 1
        else:
            self.counts[event.stage]["failed"] += 1
            self.failed[event.stage].append(event.object_id)
        if not self.live_display:
            then = (
                f"will retry (attempt {event.attempt + 1} of {self.project.retry.attempts})" if will_retry else "failed for good"
            )
            self._plain(f"object {event.object_id} ({name}) attempt {event.attempt} failed, {then}: {event.error}")

    def _check(self, event: ev.CheckFinished) -> None:
        """One line per check that did not pass (docs/checks.md): printed above the bars on a terminal."""
        name = self.project.objects[event.object_id].name
        rows = event.failing_rows
        what = event.message if event.status == "error" else f"{rows:,} failing row{'s' if rows != 1 else ''}"
        sample = f", e.g. {'; '.join(event.sample)}" if event.sample and event.status == "failed" else ""
        where = f"on object {event.object_id} ({name})"
        self._plain(f"check {event.check} ({event.kind}, {event.severity}) {where}: {event.status}, {what}{sample}")

    def _start(self, event: ev.RunStarted) -> None:
        per_stage = Counter(self.project.objects[oid].stage for oid in event.planned)
        for stage in self.project.stage_names:
            if per_stage[stage]:
                self.counts[stage] = Counter()
                self.failed[stage] = []
                self.retrying[stage] = {}
                self.totals[stage] = per_stage[stage]
                self.tasks[stage] = self.progress.add_task(stage, total=per_stage[stage], detail="")
        if not self.live_display:
            stages = ", ".join(f"{stage} {count}" for stage, count in self.totals.items())
            fresh = f", {len(event.fresh)} fresh" if event.fresh else ""
            self._plain(f"run {event.run_id}: {len(event.planned)} objects planned ({stages}){fresh}")

    def _final(self, stage: str) -> int:
        c = self.counts[stage]
        return c["loaded"] + c["skipped"] + c["fresh"] + c["failed"]

    def detail(self, stage: str) -> str:
        """``loaded 7, failed 1 (2005), retrying 1 (2003: attempt 2)``: what the stage's objects did."""
        c = self.counts[stage]
        parts = [f"{name} {c[name]}" for name in ("running", "loaded", "fresh", "skipped") if c[name] > 0]
        if self.failed[stage]:
            parts.append(f"failed {len(self.failed[stage])} ({_ids(self.failed[stage])})")
        retrying = self.retrying[stage]
        if retrying:
            waiting = ", ".join(f"{oid}: attempt {attempt}" for oid, attempt in list(retrying.items())[:5])
            parts.append(f"retrying {len(retrying)} ({waiting}{', ...' if len(retrying) > 5 else ''})")
        return ", ".join(parts)

    def _plain(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        for stage, task in self.tasks.items():
            self.progress.update(task, completed=self._final(stage), detail=self.detail(stage))


def _ids(ids: list[int], most: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def summary_table(project: Project, summary: RunSummary, max_rows: int = 40) -> Table:
    """One row per object (only those not loaded, for big runs), with errors and skip reasons."""
    table = Table(title=f"run {summary.run_id}: {summary.status} in {summary.duration_s:.2f}s")
    states = sorted(summary.objects.values(), key=lambda s: s.object_id)
    notable = [s for s in states if s.status != "loaded"] if len(states) > max_rows else states
    with_notes = any(s.error or s.reason for s in notable)
    for column in ("id", "name", "stage", "status", "tries", "rows", "seconds"):
        table.add_column(column, justify="right" if column in ("id", "tries", "rows", "seconds") else "left", no_wrap=True)
    if with_notes:
        table.add_column("note", overflow="fold")  # the whole error, folded on a terminal, never cut
    for s in notable[:max_rows]:
        style = STATUS_STYLE.get(s.status, "")
        cells: list[str | Text] = [
            str(s.object_id),
            project.objects[s.object_id].name,
            s.stage,
            f"[{style}]{s.status}[/{style}]" if style else s.status,
            str(s.attempt),
            "" if s.rows is None else f"{s.rows:,}",
            "" if s.duration_s is None else f"{s.duration_s:.2f}",
        ]
        if with_notes:
            cells.append(Text(s.error or s.reason or ""))
        table.add_row(*cells)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts().items()))
    hidden = len(notable) - max_rows if len(notable) > max_rows else len(states) - len(notable)
    table.caption = counts + (f" ({hidden} more not shown; --json lists every object)" if hidden > 0 else "")
    return table
