"""Read a run's events back from the bus, in log order."""

from __future__ import annotations

from collections.abc import Iterator

from sluice import events as ev
from sluice.bus import names
from sluice.errors import RunNotFound
from sluice.project.model import Project
from sluice.runtime.run import Backends


def run_events(
    backends: Backends, project: Project, run_id: str | None = None, batch: int = 5000
) -> Iterator[tuple[int, ev.AnyEvent]]:
    """``(position, event)`` for every event of ``run_id`` (default: the project's latest run)."""
    if run_id is None:
        runs = backends.state.list_runs(project.name, limit=1)
        if not runs:
            raise RunNotFound(f"project '{project.name}' has no runs yet; start one with 'sluice run'")
        record = runs[0]
    else:
        record = backends.state.get_run(run_id)
    offset = record.first_offset
    while True:
        messages = backends.bus.read(names.EVENTS_TOPIC, offset, batch)
        for message in messages:
            try:
                event = ev.decode(message.value)
            except ValueError:
                continue
            if event.run_id != record.run_id:
                continue
            yield message.offset, event
            if isinstance(event, ev.RunFinished):
                return
        if len(messages) < batch:
            return
        offset = messages[-1].offset + 1
