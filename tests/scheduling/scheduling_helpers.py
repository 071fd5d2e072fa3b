"""What the scheduling tests share: a project with schedules, a starter that records runs without running them."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import write_yaml

from sluice import events as ev
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.scheduler import FakeClock, Scheduler
from sluice.state.base import RunRecord, StateStore

_numbers = itertools.count(1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def project_with(tmp_path: Path, schedules: str) -> Project:
    """Three no-op objects (1001 -> 2001, 1002) and the given ``schedules:`` section."""
    text = "name: shop\nobjects:\n  - {id: 1001}\n  - {id: 1002, tags: [crm]}\n  - {id: 2001, parents: [1001]}\n"
    return load_project(write_yaml(tmp_path, text + "schedules:\n" + schedules))


class RecordingStarter:
    """Records a ``running`` run in the state store for each request (nothing runs); tests finish them. A run id
    already recorded is not started (None), as with the real starter."""

    def __init__(self, project: Project, state: StateStore) -> None:
        self.project = project
        self.state = state
        self.requests: list[RunRequest] = []
        self.run_ids: list[str] = []
        self._lock = threading.Lock()

    def start(self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]:
        ids: list[str | None] = []
        for index, request in enumerate(requests):
            run_id = run_ids[index] if run_ids is not None else f"run-{next(_numbers)}"
            options = request.options().as_dict()
            try:  # as CoordinatorStarter: a run id already recorded does not start again
                self.state.create_run(RunRecord(run_id, self.project.name, "running", time.time(), options=options), [])
            except Exception:
                ids.append(None)
                continue
            with self._lock:
                self.requests.append(request)
                self.run_ids.append(run_id)
            ids.append(run_id)
        return ids

    def finish(self, status: str = "succeeded") -> None:
        """Finish every run started so far."""
        for run_id in self.run_ids:
            if self.state.get_run(run_id).status == "running":
                self.state.finish_run(run_id, status, time.time())

    def fired(self) -> list[tuple[str, str]]:
        """(schedule, logical date) of each run started, in order."""
        return [(r.name, r.logical_date.isoformat()) for r in self.requests]


class Harness:
    """A scheduler over a fake clock, a recording starter and a list of the events it publishes."""

    def __init__(self, project: Project, state: StateStore, clock: FakeClock, holder: str = "a", lease_s: float = 30.0) -> None:
        self.starter = RecordingStarter(project, state)
        self.published: list[ev.Event] = []
        self.scheduler = Scheduler(
            project, state, self.starter, clock=clock, holder=holder, lease_s=lease_s, publish=self.published.extend
        )

    def missed(self) -> list[tuple[str, str, str]]:
        return [(e.schedule, e.logical_date, e.reason) for e in self.published if isinstance(e, ev.ScheduleMissed)]
