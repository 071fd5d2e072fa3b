"""A run started by hand holds a lease while its coordinator lives; runs whose coordinator is gone are interrupted."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.state.test_contract import OpenStore, open_store  # noqa: F401  (the stores of the contract tests)

from helpers import events_of, load, wait_for, write_yaml
from sluice import events as ev
from sluice.errors import RunNotFound
from sluice.pids import proc_state
from sluice.project.model import Project
from sluice.runtime import run as run_module
from sluice.runtime import run_lease as run_lease_module
from sluice.runtime.coordinator import Coordinator
from sluice.runtime.run import Backends, RunActivity, RunOptions, open_backends, run_project
from sluice.runtime.run_lease import RunBusy, RunInterrupted, interrupt_dead_runs, run_lease, run_lease_key
from sluice.state.base import RunRecord, StateStore

NOW = 1000.0


def _record(store: StateStore, run_id: str, trigger: str = "manual", status: str = "running") -> None:
    store.create_run(RunRecord(run_id, "shop", status, 1.0, options={"trigger": trigger}), [])


def _dead_pid() -> str:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return gone.stdout.strip()


def test_runs_started_by_hand_whose_coordinator_is_gone_are_marked_interrupted(
    open_store: OpenStore,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store()
    for run_id in ("killed-here", "never-leased", "expired-elsewhere", "live-here", "live-elsewhere"):
        _record(store, run_id)
    _record(store, "scheduled", trigger="schedule")  # the scheduler's to resume, under the project's lease
    _record(store, "done", status="succeeded")
    here = socket.gethostname()
    assert store.acquire_lease(run_lease_key("shop", "killed-here"), f"{here}:{_dead_pid()}:x", NOW, 30)  # kill -9
    assert store.acquire_lease(run_lease_key("shop", "expired-elsewhere"), "elsewhere:4242:x", NOW - 31, 30)
    assert store.acquire_lease(run_lease_key("shop", "live-elsewhere"), "elsewhere:4243:x", NOW, 30)
    live = run_lease(store, "shop", "live-here", clock=lambda: NOW)
    live.hold()  # a coordinator of this process, driving its run
    try:
        with caplog.at_level(logging.WARNING, logger="sluice"):
            marked = interrupt_dead_runs(store, "shop", tmp_path / "shop", clock=lambda: NOW)
        assert interrupt_dead_runs(store, "shop", tmp_path, clock=lambda: NOW) == []  # once only
    finally:
        live.release()
    assert sorted(r.run_id for r in marked) == ["expired-elsewhere", "killed-here", "never-leased"]
    statuses = {r.run_id: (r.status, r.finished_at) for r in store.list_runs("shop")}
    assert statuses == {
        "killed-here": ("interrupted", NOW),
        "never-leased": ("interrupted", NOW),
        "expired-elsewhere": ("interrupted", NOW),
        "live-here": ("running", None),
        "live-elsewhere": ("running", None),
        "scheduled": ("running", None),
        "done": ("succeeded", None),
    }
    for run_id in ("killed-here", "never-leased", "expired-elsewhere"):
        assert store.lease(run_lease_key("shop", run_id)) is None, "the lease taken to mark it is given back"
        [line] = [r.getMessage() for r in caplog.records if run_id in r.getMessage()]
        assert "marked interrupted" in line and f"--resume --run {run_id}" in line and str(tmp_path / "shop") in line


def test_a_run_lease_held_by_a_live_process_refuses_another_with_its_name(open_store: OpenStore) -> None:  # noqa: F811
    store = open_store()
    assert store.acquire_lease(run_lease_key("shop", "r1"), "elsewhere:4242:x", NOW, 30)
    with pytest.raises(RunBusy, match=r"run r1 is being driven by process 4242 on host elsewhere"):
        run_lease(store, "shop", "r1", clock=lambda: NOW).hold()
    taken = run_lease(store, "shop", "r1", clock=lambda: NOW + 31)  # it stopped renewing: expired
    taken.hold()
    held = store.lease(run_lease_key("shop", "r1"))
    assert held is not None and held.holder == taken.holder
    taken.release()
    assert store.lease(run_lease_key("shop", "r1")) is None


PROJECT = """
name: shop
connections:
  out: sqlite:///out.db
objects:
  - id: 1001
    name: users
    source: {type: faker, schema: users, rows: 12, seed: 4}
    destination: {connection: out, table: users, mode: append}
  - {id: 2001, name: clean_users, parents: [1001], sql: select * from users}
"""


def test_a_run_started_by_hand_holds_its_lease_until_it_ends(tmp_path: Path) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    seen: list[tuple[str, str | None]] = []

    def during(coordinator: Coordinator) -> None:
        held = coordinator.state.lease(run_lease_key("shop", coordinator.run_id))
        seen.append((coordinator.run_id, held.holder if held is not None else None))

    summary = run_project(project, RunOptions(), on_start=during)
    assert summary.status == "succeeded"
    [(run_id, holder)] = seen
    assert holder is not None and holder.split(":")[:2] == [socket.gethostname(), str(os.getpid())]
    with open_backends(project) as backends:
        assert backends.state.lease(run_lease_key("shop", run_id)) is None, "released at the run's end"


def test_resuming_a_run_another_live_process_drives_is_refused(tmp_path: Path) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    with open_backends(project) as backends:
        driving = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions())
        run_id = driving.start()  # its loop would run here; its lease is held by this live process
        try:
            with pytest.raises(RunBusy, match=f"run {run_id} is being driven by process"):
                Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions()).resume(run_id)
            assert interrupt_dead_runs(backends.state, "shop", project.root) == []  # a new run leaves it alone
            assert backends.state.get_run(run_id).status == "running"
        finally:
            driving.release_lease()


def test_an_interrupted_run_resumes_handing_out_its_objects_again_and_loads_them_once(tmp_path: Path) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    with open_backends(project) as backends:
        dead = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions())
        run_id = dead.start()  # 1001 handed out (attempt 1), then the process "died": no loop, no lease renewed
        dead.release_lease()
        assert [r.run_id for r in interrupt_dead_runs(backends.state, "shop", project.root)] == [run_id]
        assert not RunActivity(backends.state)(run_id), "workers skip an interrupted run's work"
        with pytest.raises(RunNotFound, match="--resume --run ID"):  # resumed only when named
            Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions()).resume()
    summary = run_project(project, RunOptions(resume=run_id))  # sluice run PATH --resume --run ID
    assert (summary.run_id, summary.status) == (run_id, "succeeded")
    assert summary.objects[1001].attempt == 2, "handed out again as its next attempt"
    log = [e for _, e in events_of(project, run_id)]
    started = Counter((e.object_id, e.attempt) for e in log if isinstance(e, ev.ObjectStarted))
    assert started == {(1001, 2): 1, (2001, 1): 1}, "attempt 1 of 1001, still on the bus, is skipped"
    with sqlite3.connect(tmp_path / "shop" / "out.db") as conn:
        assert conn.execute("select count(*) from users").fetchone()[0] == 12
    with open_backends(project) as backends:
        assert (backends.state.get_run(run_id).status, backends.state.lease(run_lease_key("shop", run_id))) == (
            "succeeded",
            None,
        )


def test_a_coordinator_paused_past_its_lease_stops_once_its_run_was_marked_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_lease_module, "RUN_LEASE_S", 0.3)  # renewed every 0.1 s
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    with open_backends(project) as backends:
        paused = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions())
        run_id = paused.start()  # no workers: its work waits, and so does its loop
        # Another process found its lease expired (this one, paused, had not renewed it) and marked the run
        assert backends.state.set_run_status(run_id, "interrupted", 1.0, expected="running")
        with pytest.raises(RunInterrupted, match=f"--resume --run {run_id}"):
            paused.loop()  # workers skip an interrupted run's work: it would never finish
        assert backends.state.get_run(run_id).status == "interrupted", "left to be resumed"
        assert backends.state.lease(run_lease_key("shop", run_id)) is None


def test_a_run_whose_coordinator_was_killed_a_moment_ago_is_marked_though_not_yet_reaped(
    open_store: OpenStore,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = open_store()
    _record(store, "killed-just-now")
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # kill -9 leaves a zombie until its parent reaps it
    try:
        wait_for(lambda: proc_state(child.pid) == "Z", 30, "the coordinator's process to exit")
        assert store.acquire_lease(run_lease_key("shop", "killed-just-now"), f"{socket.gethostname()}:{child.pid}:x", NOW, 30)
        assert [r.run_id for r in interrupt_dead_runs(store, "shop", tmp_path, clock=lambda: NOW)] == ["killed-just-now"]
    finally:
        child.wait()
    assert store.get_run("killed-just-now").status == "interrupted"


def test_a_new_run_marks_dead_runs_before_its_workers_take_any_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    with open_backends(project) as backends:
        dead = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions())
        dead_id = dead.start()  # 1001 handed out (attempt 1) on the bus, then the process died
        dead.release_lease()
    seen: list[str] = []
    real_start_workers = run_module.start_workers

    def start_workers(project: Project, backends: Backends, **kwargs: Any) -> Any:
        seen.append(backends.state.get_run(dead_id).status)
        return real_start_workers(project, backends, **kwargs)

    monkeypatch.setattr(run_module, "start_workers", start_workers)
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded"
    assert seen == ["interrupted"], "the dead run is marked before the new run's workers start"
    started = [e for _, e in events_of(project, dead_id) if isinstance(e, ev.ObjectStarted)]
    assert started == [], "the dead run's leftover work did not run"
    with sqlite3.connect(tmp_path / "shop" / "out.db") as conn:
        assert conn.execute("select count(*) from users").fetchone()[0] == 12, "the append got the new run's rows only"


def test_a_worker_marks_a_run_whose_coordinator_is_gone_and_does_not_start_its_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    ready = ev.ObjectReady(run_id="r1", object_id=1001, stage="ingest", attempt=1)
    with open_backends(project) as backends:
        state = backends.state
        state.create_run(RunRecord("r1", "shop", "running", 1.0, options={"trigger": "manual"}), [])
        activity = RunActivity(state, root=project.root)
        live = run_lease(state, "shop", "r1")
        live.hold()  # its coordinator lives
        try:
            assert activity.settled(ready) == ""
        finally:
            live.release()
        assert state.acquire_lease(run_lease_key("shop", "r1"), f"{socket.gethostname()}:{_dead_pid()}:x", 1e12, 30)
        with caplog.at_level(logging.WARNING, logger="sluice"):
            assert activity.settled(ready) == "run r1 is interrupted (its coordinator is gone)"  # kill -9
        assert state.get_run("r1").status == "interrupted"
        assert any("--resume --run r1" in r.getMessage() for r in caplog.records)
        state.create_run(RunRecord("r2", "shop", "running", 1.0, options={"trigger": "schedule"}), [])
        assert activity.settled(ev.ObjectReady(run_id="r2", object_id=1001, stage="ingest", attempt=1)) == "", (
            "a scheduled run holds no run lease"
        )


def test_a_worker_reads_the_run_status_again_after_checking_its_lease(tmp_path: Path) -> None:
    project = load(write_yaml(tmp_path / "shop", PROJECT))
    ready = ev.ObjectReady(run_id="r1", object_id=1001, stage="ingest", attempt=1)
    with open_backends(project) as backends:
        state = backends.state
        state.create_run(RunRecord("r1", "shop", "running", 1.0, options={"trigger": "manual"}), [])
        live = run_lease(state, "shop", "r1")
        live.hold()
        real_lease = state.lease

        def lease_then_marked(key: str) -> Any:  # another process marks the run while this worker reads its lease
            held = real_lease(key)
            state.set_run_status("r1", "interrupted", 2.0, expected="running")
            return held

        try:
            state.lease = lease_then_marked  # type: ignore[method-assign]
            assert RunActivity(state, root=project.root).settled(ready) == "run r1 is interrupted (its coordinator is gone)"
        finally:
            state.lease = real_lease  # type: ignore[method-assign]
            live.release()
