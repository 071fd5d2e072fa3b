"""One process at a time runs a backfill: a second one (a thread here, with its own state store connection) is
refused naming the holder, a holder that died on this host is taken over at once, an expired lease is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tests.scheduling.test_backfills import SPEC, FakeRuns

from sluice.scheduling.backfill_lease import BackfillBusy, lease_key
from sluice.scheduling.backfills import Backfills, logical_dates
from sluice.scheduling.requests import RunRequest
from sluice.state.sqlite import SqliteStateStore


def test_a_second_runner_of_the_same_backfill_is_refused_naming_the_first(tmp_path: Path) -> None:
    first_state, second_state = SqliteStateStore(tmp_path / "state.db"), SqliteStateStore(tmp_path / "state.db")
    try:
        backfill_id = Backfills(first_state, "shop").create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id
        inside, release = threading.Event(), threading.Event()

        def hold(request: RunRequest) -> None:
            inside.set()
            assert release.wait(30)

        first_runs = FakeRuns(hook=hold)
        outcome: list[str] = []
        thread = threading.Thread(
            target=lambda: outcome.append(Backfills(first_state, "shop").run(backfill_id, first_runs).status)
        )
        thread.start()
        try:
            assert inside.wait(30)
            second_runs = FakeRuns()
            with pytest.raises(BackfillBusy) as refused:
                Backfills(second_state, "shop").run(backfill_id, second_runs)
            message = str(refused.value)
            assert f"backfill {backfill_id} is being run by process {os.getpid()} on host {socket.gethostname()}" in message
            assert "wait for it to finish" in message and "stop it (Ctrl-C) and run this again" in message
            assert second_runs.requests == []  # nothing ran twice
        finally:
            release.set()
            thread.join(30)
        assert outcome == ["succeeded"] and len(first_runs.requests) == 6
        assert first_state.lease(lease_key("shop", backfill_id)) is None  # released at the end
        # once the first is done, the same backfill can be run (nothing left to do)
        assert Backfills(second_state, "shop").run(backfill_id, second_runs).status == "succeeded"
        assert second_runs.requests == []
    finally:
        first_state.close()
        second_state.close()


def test_a_holder_that_died_on_this_host_is_taken_over_and_an_expired_one_too(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.db")
    try:
        now = [1000.0]
        backfills = Backfills(state, "shop", clock=lambda: now[0], lease_s=30)
        backfill_id = backfills.create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id
        key = lease_key("shop", backfill_id)
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        assert state.acquire_lease(key, f"{socket.gethostname()}:{gone.stdout.strip()}:dead", now[0], 30)
        assert backfills.run(backfill_id, FakeRuns()).status == "succeeded"  # a kill -9'd holder: at once

        other = backfills.create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id
        assert state.acquire_lease(lease_key("shop", other), "elsewhere:4242:x", now[0], 30)
        with pytest.raises(BackfillBusy, match="is being run by process 4242 on host elsewhere"):
            backfills.run(other, FakeRuns())
        now[0] += 31  # another host's holder that stopped renewing: its lease expires
        assert backfills.run(other, FakeRuns()).status == "succeeded"
    finally:
        state.close()
