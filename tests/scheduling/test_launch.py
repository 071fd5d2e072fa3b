"""InProcessRuns runs requests to their end through the scheduler's own launcher (CoordinatorStarter): the same
planning, recording and loops, the defaults applied, a run that cannot start raising its error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.scheduling.scheduling_helpers import project_with

from sluice.errors import RunNotFound
from sluice.runtime.summary import RunOptions
from sluice.scheduling.launch import InProcessRuns
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.starter import CoordinatorStarter

DAY = datetime(2026, 1, 1, tzinfo=UTC)


def test_requests_run_to_their_end_through_the_coordinator_starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_with(tmp_path, "  nightly: {cron: '0 2 * * *', enabled: false}\n")
    launched: list[str] = []
    start_one = CoordinatorStarter.start_one

    def spy(self: CoordinatorStarter, request: RunRequest, run_id: str | None = None) -> str:
        launched.append(request.key)
        return start_one(self, request, run_id)

    monkeypatch.setattr(CoordinatorStarter, "start_one", spy)
    seen: list[str] = []
    with InProcessRuns(project, RunOptions(fail=frozenset({1002}))) as runs:
        assert isinstance(runs.starter, CoordinatorStarter)
        ok = RunRequest("backfill:b1", "backfill", DAY, (2001,), key="b1@1")
        assert runs(ok, seen.append) == "succeeded"
        assert runs(RunRequest("backfill:b1", "backfill", DAY, (1002,), key="b1@2"), seen.append) == "failed"  # --fail
        assert runs(ok, seen.append, resume=seen[0]) == "succeeded"  # finished since: its status, not run again
        assert runs.starter.active == 0
        with pytest.raises(RunNotFound):
            runs.starter.resume_one(seen[0], ok)
    assert launched == ["b1@1", "b1@2"]
    assert len(seen) == 3 and seen[2] == seen[0]
