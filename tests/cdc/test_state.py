"""``SyncState``: the lag of a table with nothing left to apply, from its capture's heartbeats."""

from __future__ import annotations

import time

from sluice.cdc.state import SyncState
from sluice.cdc.status import TableState

DIRECTION = "src -> dst"


def idle_state(table_state: TableState) -> SyncState:
    state = SyncState("s1", "src", "dst", "one-way", ["apply:dst"])
    state.set_state(DIRECTION, "app.emp", table_state)
    state.mark_idle(DIRECTION, "app.emp")
    return state


def lag(state: SyncState) -> float | None:
    return state.snapshot_status().tables[0].lag_s


def test_an_idle_table_has_lag_zero_until_its_capture_is_silent_too_long() -> None:
    state = idle_state("streaming")
    assert lag(state) == 0.0  # no heartbeat read yet: nothing says capture is gone
    now_us = time.time_ns() // 1000
    state.vouch(DIRECTION, now_us - 3_000_000, silent_after_s=11.0)
    assert lag(state) == 0.0
    state.vouch(DIRECTION, now_us - 60_000_000, silent_after_s=11.0)  # an older heartbeat read late changes nothing
    assert lag(state) == 0.0
    silent = idle_state("streaming")
    silent.vouch(DIRECTION, now_us - 60_000_000, silent_after_s=11.0)
    assert 59.0 < (lag(silent) or 0.0) < 70.0


def test_a_snapshotting_table_waits_for_its_copy_without_lag() -> None:
    """A capture reading a big table publishes no heartbeat until the copy ends: no alarm for that."""
    state = idle_state("snapshotting")
    state.vouch(DIRECTION, time.time_ns() // 1000 - 60_000_000, silent_after_s=11.0)
    assert lag(state) == 0.0
