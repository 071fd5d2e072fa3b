"""Live terminal progress of a run (one bar per stage) and the final table."""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sluice import events as ev
from sluice.project.model import Project
from sluice.runtime.summary import RunSummary

STATUS_STYLE = {
    "loaded": "green",
    "failed": "red",
    "skipped": "yellow",
    "running": "cyan",
    "ready": "blue",
    "retrying": "magenta",
}


class RunProgress:
    """An observer for the coordinator that renders per-stage progress with rich."""

    def __init__(self, project: Project, console: Console) -> None:
        self.project = project
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.live = Live(Group(self.progress), console=console, refresh_per_second=8, transient=False)
        self._last = 0.0

    def __enter__(self) -> RunProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
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
        if isinstance(event, ev.ObjectStarted):
            counts["running"] += 1
        elif isinstance(event, ev.ObjectLoaded):
            counts["running"] -= 1
            counts["loaded"] += 1
        elif isinstance(event, ev.ObjectFailed):
            counts["running"] -= 1
            counts["failed attempts"] += 1
        elif isinstance(event, ev.ObjectSkipped):
            counts["fresh" if event.fresh else "skipped"] += 1
        self._refresh()

    def _start(self, event: ev.RunStarted) -> None:
        per_stage = Counter(self.project.objects[oid].stage for oid in event.planned)
        for stage in self.project.stage_names:
            if per_stage[stage]:
                self.counts[stage] = Counter()
                self.tasks[stage] = self.progress.add_task(stage, total=per_stage[stage], detail="")

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        for stage, task in self.tasks.items():
            c = self.counts[stage]
            done = c["loaded"] + c["skipped"] + c["fresh"]
            detail = " ".join(
                f"{name} {c[name]}" for name in ("running", "loaded", "fresh", "skipped", "failed attempts") if c[name] > 0
            )
            self.progress.update(task, completed=done, detail=detail)


def summary_table(project: Project, summary: RunSummary, max_rows: int = 40) -> Table:
    """One row per object (only those not loaded, for big runs), with errors and skip reasons."""
    table = Table(title=f"run {summary.run_id}: {summary.status} in {summary.duration_s:.2f}s")
    states = sorted(summary.objects.values(), key=lambda s: s.object_id)
    notable = [s for s in states if s.status != "loaded"] if len(states) > max_rows else states
    with_notes = any(s.error or s.reason for s in notable)
    for column in ("id", "name", "stage", "status", "tries", "rows", "seconds", *(("note",) if with_notes else ())):
        table.add_column(column, justify="right" if column in ("id", "tries", "rows", "seconds") else "left")
    for s in notable[:max_rows]:
        style = STATUS_STYLE.get(s.status, "")
        cells = [
            str(s.object_id),
            project.objects[s.object_id].name,
            s.stage,
            f"[{style}]{s.status}[/{style}]" if style else s.status,
            str(s.attempt),
            "" if s.rows is None else f"{s.rows:,}",
            "" if s.duration_s is None else f"{s.duration_s:.2f}",
        ]
        if with_notes:
            cells.append((s.error or s.reason or "")[:60])
        table.add_row(*cells)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts().items()))
    hidden = len(notable) - max_rows if len(notable) > max_rows else len(states) - len(notable)
    table.caption = counts + (f" ({hidden} more not shown; --json lists every object)" if hidden > 0 else "")
    return table
