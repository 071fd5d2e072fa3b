"""Two schedulers on one state store at once (SQLite and PostgreSQL): every tick fires once, never twice."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from tests.scheduling.scheduling_helpers import Harness, project_with, utc
from tests.state.test_contract import OpenStore, open_store  # noqa: F401  (the stores of the contract tests)

from sluice.scheduling.scheduler import FakeClock

MINUTES = 20
SCHEDULES = "".join(f"  s{i}: {{cron: '* * * * *', max_active_runs: 1000}}\n" for i in range(5))


@pytest.mark.parametrize("lease_s", [600.0, 0.0], ids=["lease", "both-active"])
def test_two_schedulers_never_fire_a_tick_twice(tmp_path: Path, open_store: OpenStore, lease_s: float) -> None:  # noqa: F811
    """With a lease only one schedules; with a lease that expires at once (both active at every step), the tick
    records alone keep each tick to one run."""
    project = project_with(tmp_path, SCHEDULES)
    clock = FakeClock(utc(2026, 1, 1, 0, 0, 30))
    harnesses = [Harness(project, open_store(), clock, holder=name, lease_s=lease_s) for name in ("a", "b")]
    harnesses[0].scheduler.step()  # first sight of the schedules: 00:00 is their baseline
    leaders: Counter[str] = Counter()

    def step(h: Harness, barrier: threading.Barrier) -> None:
        barrier.wait()
        if h.scheduler.step().leader:
            leaders[h.scheduler.holder] += 1

    for _ in range(MINUTES):
        clock.advance(60)
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=step, args=(h, barrier)) for h in harnesses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    fired = [pair for h in harnesses for pair in h.starter.fired()]
    counts = Counter(fired)
    assert [pair for pair, n in counts.items() if n > 1] == []  # none doubled
    expected = {(f"s{i}", utc(2026, 1, 1, 0, m).isoformat()) for i in range(5) for m in range(1, MINUTES + 1)}
    assert set(counts) == expected  # none missed
    assert all(h.missed() == [] for h in harnesses)
    if lease_s:
        assert len(leaders) == 1 and sum(leaders.values()) == MINUTES  # one held the lease; the other stood by
    else:
        assert sum(leaders.values()) == 2 * MINUTES
