"""One process at a time runs a backfill: a second one (a thread here, with its own state store connection) is
refused naming the holder (SQLite and PostgreSQL), a holder that died on this host is taken over at once, an
expired lease is taken; through the command, a second process is refused while the first runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import pytest
from tests.scheduling.test_backfills import SPEC, FakeRuns
from tests.state.test_contract import OpenStore, open_store  # noqa: F401  (the stores of the contract tests)

from sluice.scheduling.backfill_lease import BackfillBusy, lease_key
from sluice.scheduling.backfills import Backfills, BackfillSpec, logical_dates
from sluice.scheduling.requests import RunRequest
from sluice.state.sqlite import SqliteStateStore


def test_a_second_runner_of_the_same_backfill_is_refused_naming_the_first(open_store: OpenStore) -> None:  # noqa: F811
    first_state, second_state = open_store(), open_store()  # two connections, as two processes have
    backfill_id = Backfills(first_state, "shop").create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id
    inside, release = threading.Event(), threading.Event()

    def hold(request: RunRequest) -> None:
        inside.set()
        assert release.wait(30)

    first_runs = FakeRuns(hook=hold)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(Backfills(first_state, "shop").run(backfill_id, first_runs).status))
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


def test_another_backfill_sharing_a_date_with_a_running_one_is_refused_and_one_of_other_dates_runs(
    tmp_path: Path,
) -> None:
    """A ``--new`` backfill of the same range, or an overlapping one, would run the shared dates a second time (an
    append destination got their rows twice); one of other dates may run beside it."""
    state = SqliteStateStore(tmp_path / "state.db")
    try:
        now = [1000.0]
        backfills = Backfills(state, "shop", clock=lambda: now[0], lease_s=30)
        running = backfills.create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id  # 2026-01-01 .. 06
        assert state.acquire_lease(lease_key("shop", running), "elsewhere:4242:x", now[0], 30)  # being run elsewhere
        overlapping = BackfillSpec(date(2026, 1, 6), date(2026, 1, 8), targets=(3,))
        second = backfills.create(overlapping, logical_dates(overlapping.start, overlapping.end)).backfill_id
        runs = FakeRuns()
        with pytest.raises(BackfillBusy) as refused:
            backfills.run(second, runs)
        message = str(refused.value)
        assert f"backfill {second} shares 1 logical date(s) (from 2026-01-06T00:00:00+00:00) with backfill {running}" in message
        assert "being run by process 4242 on host elsewhere" in message and "wait for it to finish" in message
        assert runs.requests == []  # nothing ran
        assert state.lease(lease_key("shop", second)) is None  # its own lease given back
        assert state.get_backfill(second).status == "refused"  # not left pending: the same command records anew
        assert backfills.unfinished(overlapping) is None

        apart = BackfillSpec(date(2026, 1, 7), date(2026, 1, 8), targets=(3,))
        third = backfills.create(apart, logical_dates(apart.start, apart.end)).backfill_id
        assert backfills.run(third, runs).status == "succeeded"  # other dates: runs beside it
        assert [r.logical_date.date().isoformat() for r in runs.requests] == ["2026-01-07", "2026-01-08"]

        now[0] += 31  # the first one's process stopped renewing: nothing runs it any more
        assert backfills.run(second, FakeRuns()).status == "succeeded"
    finally:
        state.close()


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


GATED = """
name: bf
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 5, seed: 1}}
  - {id: 2001, name: gated, parents: [1001], python: "gate:run"}
"""
GATE = (  # the date's object waits in the first process until the test lets it go
    "import time\nfrom pathlib import Path\n"
    "def run(users):\n"
    "    here = Path(__file__).parent\n"
    "    (here / 'started').touch()\n"
    "    deadline = time.monotonic() + 60\n"
    "    while not (here / 'go').exists() and time.monotonic() < deadline:\n"
    "        time.sleep(0.05)\n"
    "    return users\n"
)


def test_the_same_command_in_a_second_process_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    from helpers import sluice_cli, wait_for, write_yaml

    path = write_yaml(tmp_path / "bf", GATED)
    (tmp_path / "bf" / "gate.py").write_text(GATE, encoding="utf-8")
    args = ["backfill", str(path), "--from", "2026-01-01", "--to", "2026-01-02"]
    with subprocess.Popen([sys.executable, "-m", "sluice", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as first:
        try:
            wait_for(lambda: (tmp_path / "bf" / "started").exists(), 60, "the first process inside its first date")
            second = sluice_cli(*args)
        finally:
            (tmp_path / "bf" / "go").touch()
        assert first.wait(60) == 0
    assert second.returncode == 2, second.stderr
    assert f"is being run by process {first.pid} on host {socket.gethostname()}" in second.stderr
    assert _statuses(tmp_path / "bf") == ["succeeded"] * 2  # one run a date: none ran twice


def _statuses(root: Path) -> list[str]:
    store = SqliteStateStore(root / ".sluice" / "state.db")
    try:
        return [run.status for run in store.find_runs("bf", limit=100)]
    finally:
        store.close()


def test_a_holder_that_loses_its_lease_starts_no_more_dates_and_says_so(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.db")
    try:
        now = [1000.0]
        backfills = Backfills(state, "shop", clock=lambda: now[0], lease_s=0.3)  # renewed every 0.1 s
        backfill_id = backfills.create(SPEC, logical_dates(SPEC.start, SPEC.end)).backfill_id

        def taken_over(request: RunRequest) -> None:
            if request.logical_date.day == 1:  # paused past the lease's expiry; another process takes it
                now[0] += 1
                assert state.acquire_lease(lease_key("shop", backfill_id), "elsewhere:4242:x", now[0], 600)
                assert backfills.lost.wait(30)

        runs = FakeRuns(hook=taken_over)
        assert backfills.run(backfill_id, runs).status == "running"
        assert backfills.lost.is_set() and runs.days() == ["2026-01-01"]
    finally:
        state.close()
