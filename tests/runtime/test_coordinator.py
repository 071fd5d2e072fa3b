"""Run ids: the time they carry is the clock Python reads, to the second."""

from __future__ import annotations

import time

import pytest

from sluice.runtime import coordinator
from sluice.runtime.coordinator import new_run_id


def test_a_run_id_made_just_after_a_second_begins_carries_that_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # time.strftime() without a time reads C's time(NULL), a coarse clock a few ms behind time.time(): at 06:02:00.0007
    # it still said 06:01:59 (a trial saw tick 06:02:00 -> run 20261201-060159-...).
    instant = time.mktime((2026, 12, 1, 6, 2, 0, 0, 0, -1)) + 0.0007
    monkeypatch.setattr(coordinator.time, "time", lambda: instant)
    assert new_run_id().startswith("20261201-060200-")
    assert new_run_id(instant + 3600).startswith("20261201-070200-")
    assert len({new_run_id() for _ in range(1000)}) == 1000
