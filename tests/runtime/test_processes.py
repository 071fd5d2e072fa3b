"""Crashes of real processes: a coordinator killed mid-run and resumed, a worker killed mid-object."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from helpers import (
    check_ordering,
    events_of,
    load,
    loaded_count,
    seed_project,
    sluice_cli,
    summary_json,
    wait_for,
    write_yaml,
)
from sluice import events as ev
from sluice.state.sqlite import SqliteStateStore

SLUICE = [sys.executable, "-m", "sluice"]


def test_killed_coordinator_resumes_without_redoing_loaded_objects(tmp_path: Path) -> None:
    path = seed_project(tmp_path)
    state_db = path.parent / ".sluice" / "state.db"
    first = subprocess.Popen(
        [*SLUICE, "run", str(path), "--json", "--simulate", "--delay-scale", "0.4"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: loaded_count(state_db) >= 6, 60, "six objects loaded")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    project = load(path)
    store = SqliteStateStore(state_db)
    run = store.list_runs(limit=1)[0]
    before = {oid for oid, s in store.object_states(run.run_id).items() if s.status == "loaded"}
    store.close()
    assert run.status == "running"
    assert 6 <= len(before) < 19
    resumed = subprocess.run(
        [*SLUICE, "run", str(path), "--resume", "--json", "--simulate", "--delay-scale", "0.4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = summary_json(resumed.stdout)
    assert summary["run_id"] == run.run_id
    assert {o["status"] for o in summary["objects"].values()} == {"loaded"}
    log = events_of(project, run.run_id)
    check_ordering(project, log)
    started = Counter(e.object_id for _, e in log if isinstance(e, ev.ObjectStarted))
    redone = [oid for oid in before if started[oid] != 1]
    assert not redone, f"objects loaded before the crash were processed again: {redone}"
    assert sum(1 for _, e in log if isinstance(e, ev.RunFinished)) == 1


def test_resume_with_nothing_to_resume_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SLUICE, "run", str(seed_project(tmp_path)), "--resume"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "no unfinished run" in result.stderr


def test_killed_worker_process_object_redelivered_and_output_not_duplicated(tmp_path: Path) -> None:
    folder = tmp_path / "workers"
    write_yaml(
        folder,
        """
lease_s: 1.5
stages:
  ingest: {ids: 1000-1999, concurrency: 1}
  standardize: {ids: 2000-2999, concurrency: 1}
  application: {ids: 3000+, concurrency: 1}
connections:
  out: sqlite:///out.db
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 50, seed: 3}}
  - id: 2001
    name: slow_users
    parents: [1001]
    python: "slow:run"
    destination: {connection: out, table: slow_users, mode: append}
  - {id: 3001, name: total, parents: [2001], sql: "select count(*) as n from slow_users"}
""",
    )
    (folder / "slow.py").write_text(
        "import os, time\nfrom pathlib import Path\n"
        "def run(users):\n"
        "    Path(__file__).with_name(f'started-{os.getpid()}').touch()\n"
        "    time.sleep(3)\n"
        "    return users\n"
    )
    logs = (tmp_path / "worker-logs.txt").open("w")
    workers = {
        stage: subprocess.Popen([*SLUICE, "worker", str(folder), "--stage", stage], stdout=logs, stderr=logs)
        for stage in ("ingest", "application")
    }
    standardize = [
        subprocess.Popen([*SLUICE, "worker", str(folder), "--stage", "standardize"], stdout=logs, stderr=logs) for _ in range(2)
    ]
    try:
        coordinator = subprocess.Popen(
            [*SLUICE, "run", str(folder), "--workers", "external", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: any(folder.glob("started-*")), 60, "the slow object to start")
        victim_pid = int(next(folder.glob("started-*")).name.split("-")[1])
        victim = next(p for p in standardize if p.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        out, err = coordinator.communicate(timeout=90)
        assert coordinator.returncode == 0, err
        summary = summary_json(out)
        assert summary["objects"]["2001"]["status"] == "loaded"
        assert summary["objects"]["2001"]["attempts"] == 1
        assert summary["objects"]["3001"]["rows"] == 1
        starters = {p.name for p in folder.glob("started-*")}
        assert len(starters) == 2, "the object should have been redelivered to the other worker"
        import sqlite3

        with sqlite3.connect(folder / "out.db") as conn:
            assert conn.execute("select count(*) from slow_users").fetchone()[0] == 50
        project = load(folder)
        log = events_of(project, summary["run_id"])
        check_ordering(project, log)
        started = [e for _, e in log if isinstance(e, ev.ObjectStarted) and e.object_id == 2001]
        assert len(started) == 2 and started[0].worker != started[1].worker
    finally:
        for process in [*workers.values(), *standardize]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*workers.values(), *standardize]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        logs.close()


def test_worker_rejects_unknown_stage(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SLUICE, "worker", str(seed_project(tmp_path)), "--stage", "ingset"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Did you mean 'ingest'?" in result.stderr


GATED = """
stages:
  ingest: {ids: 1000-1999, concurrency: 1}
  standardize: {ids: 2000-2999, concurrency: 1}
  application: {ids: 3000+, concurrency: 1}
connections:
  out: sqlite:///out.db
objects:
  - {id: 1001, name: people, source: {type: csv, path: people.csv}}
  - {id: 3001, name: gate, parents: [1001], python: "gate:run"}
  - id: 3002
    name: sink
    parents: [1001]
    sql: select * from people
    destination: {connection: out, table: sink, mode: append}
"""


def _gated_project(folder: Path) -> Path:
    """A project whose object 3001 waits (its stage runs one object at a time) until the file ``open`` exists, with
    3002, handed out with it, loading seven rows into an append destination."""
    write_yaml(folder, GATED)
    (folder / "people.csv").write_text("id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, 8)), encoding="utf-8")
    (folder / "gate.py").write_text(
        "import time\nfrom pathlib import Path\n"
        "def run(people):\n"
        "    here = Path(__file__).parent\n"
        "    (here / 'waiting').touch()\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not (here / 'open').exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    return people\n",
        encoding="utf-8",
    )
    return folder


def _sink_ids(folder: Path) -> list[int]:
    import sqlite3

    if not (folder / "out.db").exists():
        return []
    with sqlite3.connect(folder / "out.db") as conn:
        if conn.execute("select count(*) from sqlite_master where name = 'sink'").fetchone()[0] == 0:
            return []
        return sorted(row[0] for row in conn.execute("select id from sink"))


def test_run_again_after_killed_coordinator_loads_each_row_once(tmp_path: Path) -> None:
    # The user trial: kill -9 of `sluice run` while its work was handed out, then `sluice run` again. The dead run's
    # leftover work (3002's ObjectReady, never taken) must not load a second copy of the rows beside the new run's.
    folder = _gated_project(tmp_path / "gated")
    first = subprocess.Popen([*SLUICE, "run", str(folder), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (folder / "waiting").exists(), 60, "object 3001 to start waiting")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert _sink_ids(folder) == [], "3002 should still be waiting behind 3001 when the coordinator dies"
    store = SqliteStateStore(folder / ".sluice" / "state.db")
    dead = store.list_runs(limit=1)[0]
    store.close()
    assert dead.status == "running"
    (folder / "open").touch()
    again = subprocess.run([*SLUICE, "run", str(folder), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    summary = summary_json(again.stdout)
    assert summary["run_id"] != dead.run_id
    assert _sink_ids(folder) == [1, 2, 3, 4, 5, 6, 7]
    assert f"--resume --run {dead.run_id}" in again.stderr  # how to resume it, in one warning line
    store = SqliteStateStore(folder / ".sluice" / "state.db")
    try:
        assert store.get_run(dead.run_id).status == "interrupted"
    finally:
        store.close()
    listed = sluice_cli("runs", str(folder), "--status", "interrupted", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [dead.run_id]
