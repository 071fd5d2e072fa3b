"""At-least-once delivery in one process: dead letters, duplicate events, redelivered work, retries off the main flow."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from prometheus_client import REGISTRY

from helpers import check_ordering, events_of, load, seed_project, wait_for, write_yaml
from sluice import events as ev
from sluice.bus.dead_letter import DeadLetter, parse_dead_letter
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.run import (
    Backends,
    RunActivity,
    RunOptions,
    open_backends,
    run_project,
    start_workers,
    stop_workers,
)
from sluice.runtime.run_lease import run_lease
from sluice.runtime.worker import StageWorker
from sluice.state.base import ObjectState, RunRecord


def dead_letters(backends: Backends) -> list[DeadLetter]:
    return [parse_dead_letter(m.value) for m in backends.bus.read(ev.DEAD_LETTER_TOPIC, 0, 10_000)]


def dead_letter_count(topic: str) -> float:
    return REGISTRY.get_sample_value("sluice_bus_dead_letters_total", {"topic": topic}) or 0.0


def test_worker_dead_letters_what_it_cannot_process_and_carries_on(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    topic = ev.ready_topic("ingest")
    counted_before = dead_letter_count(topic)
    not_ready = ev.encode(ev.RunStarted(run_id="r0", project="x", targets=[], planned=[]))
    unknown = ev.encode(ev.ObjectReady(run_id="r0", object_id=1999, stage="ingest"))
    wrong_stage = ev.encode(ev.ObjectReady(run_id="r0", object_id=2001, stage="ingest"))
    with open_backends(project) as backends:
        backends.bus.publish(topic, [("1", b"{not json"), ("2", b"\xff\xfe"), (None, not_ready), ("1999", unknown)])
        backends.bus.publish(topic, [("2001", wrong_stage)])
    summary = run_project(project, RunOptions(simulate=True, delay_scale=0.0))
    assert summary.status == "succeeded"
    with open_backends(project) as backends:
        letters = dead_letters(backends)
        assert backends.bus.lag("workers.ingest", topic) == 0, "dead-lettered messages must be committed"
    assert [d.value for d in letters] == [b"{not json", b"\xff\xfe", not_ready, unknown, wrong_stage]
    assert {d.topic for d in letters} == {topic}
    assert {d.group for d in letters} == {"workers.ingest"}
    reasons = [d.reason for d in letters]
    assert reasons[0].startswith("not a Sluice event") and reasons[1].startswith("not a Sluice event")
    assert "expected an ObjectReady" in reasons[2] and "got RunStarted" in reasons[2]
    assert "object 1999 is not defined" in reasons[3]
    assert "belongs to stage 'standardize'" in reasons[4]
    assert [d.key for d in letters] == ["1", "2", None, "1999", "2001"]
    assert dead_letter_count(topic) - counted_before == 5


def test_coordinator_dead_letters_malformed_events_and_the_run_completes(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    counted_before = dead_letter_count(ev.EVENTS_TOPIC)
    with open_backends(project) as backends:
        coordinator = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions(simulate=True, delay_scale=0))
        run_id = coordinator.start()
        backends.bus.publish(ev.EVENTS_TOPIC, [("1001", b'{"type": "ObjectLoaded", "run_id": 7}'), ("x", b"")])
        workers = start_workers(project, backends)
        try:
            summary = coordinator.loop()
        finally:
            stop_workers(*workers)
        letters = dead_letters(backends)
    assert summary.status == "succeeded"
    assert [(d.topic, d.group, d.value) for d in letters] == [
        (ev.EVENTS_TOPIC, f"coordinator.{run_id}", b'{"type": "ObjectLoaded", "run_id": 7}'),
        (ev.EVENTS_TOPIC, f"coordinator.{run_id}", b""),
    ]
    assert all(d.reason.startswith("not a Sluice event") for d in letters)
    assert dead_letter_count(ev.EVENTS_TOPIC) - counted_before == 2
    check_ordering(project, events_of(project, run_id))


def _duplicating_worker(project: Project, backends: Backends, done: threading.Event, fail_once: int) -> None:
    """Plays the stage workers, answering every work message twice (a redelivery): the second answer differs."""
    consumers = [backends.bus.consumer(f"workers.{s}", ev.ready_topic(s)) for s in project.stage_names]
    failed: set[int] = set()
    while not done.is_set():
        for consumer in consumers:
            for message in consumer.poll(100, timeout_s=0.01):
                ready = ev.decode(message.value)
                assert isinstance(ready, ev.ObjectReady)
                ids = {"run_id": ready.run_id, "object_id": ready.object_id, "stage": ready.stage, "attempt": ready.attempt}
                answers: list[ev.Event] = []
                for worker, rows in (("first", 10), ("second", 999)):
                    answers.append(ev.ObjectStarted(**ids, worker=worker))
                    if ready.object_id == fail_once and ready.object_id not in failed:
                        answers.append(ev.ObjectFailed(**ids, worker=worker, error="flaky", retryable=True))
                    else:
                        answers.append(ev.ObjectLoaded(**ids, worker=worker, rows=rows))
                failed.add(ready.object_id)
                backends.bus.publish_and_commit(
                    ev.EVENTS_TOPIC, [(str(ready.object_id), ev.encode(a)) for a in answers], consumer, [message]
                )
    for consumer in consumers:
        consumer.close()


def test_duplicate_outcomes_are_applied_once(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    done = threading.Event()
    with open_backends(project) as backends:
        worker = threading.Thread(target=_duplicating_worker, args=(project, backends, done, 2005), daemon=True)
        worker.start()
        try:
            summary = run_project(project, RunOptions(), workers="external")
        finally:
            done.set()
            worker.join(10)
    assert summary.status == "succeeded"
    assert {s.status for s in summary.objects.values()} == {"loaded"}
    assert {s.rows for s in summary.objects.values()} == {10}, "the first outcome counts, the duplicate is ignored"
    assert summary.objects[2005].attempt == 2
    log = [e for _, e in events_of(project, summary.run_id)]
    readies = Counter((e.object_id, e.attempt) for e in log if isinstance(e, ev.ObjectReady))
    expected = {(oid, 1) for oid in summary.objects} | {(2005, 2)}
    assert set(readies) == expected, "a duplicated failure must schedule one retry only"
    assert set(readies.values()) == {1}, "a duplicated load must release each child once"
    assert sum(1 for e in log if isinstance(e, ev.RunFinished)) == 1


def test_redelivered_object_whose_output_was_written_leaves_one_copy(tmp_path: Path) -> None:
    folder = tmp_path / "redelivery"
    write_yaml(
        folder,
        """
connections:
  out: sqlite:///out.db
objects:
  - id: 1001
    name: users
    source: {type: faker, schema: users, rows: 40, seed: 5}
    destination: {connection: out, table: users, mode: append}
""",
    )
    project = load(folder)
    with open_backends(project) as backends:
        coordinator = Coordinator(project, backends.bus, backends.state, backends.lake, RunOptions())
        run_id = coordinator.start()
        # A worker takes the object, writes its lake file and its rows, and dies before publishing the outcome.
        doomed = backends.bus.consumer("workers.ingest", ev.ready_topic("ingest"), lease_s=60)
        [message] = doomed.poll(10, timeout_s=5)
        ready = ev.decode(message.value)
        assert isinstance(ready, ev.ObjectReady)
        ObjectExecutor(project, backends.lake).run(project.objects[1001], run_id, ready.inputs)
        doomed.close()  # its lease is released: the message goes to the next worker
        workers = start_workers(project, backends)
        try:
            summary = coordinator.loop()
        finally:
            stop_workers(*workers)
    assert summary.status == "succeeded"
    assert summary.objects[1001].rows == 40
    with sqlite3.connect(folder / "out.db") as conn:
        assert conn.execute("select count(*) from users").fetchone()[0] == 40
        assert conn.execute("select load_id, rows from _sluice_loads").fetchall() == [(f"{run_id}:1001", 40)]
    lake_files = sorted(p.relative_to(project.resolve_lake_path()).as_posix() for p in project.resolve_lake_path().rglob("*"))
    assert lake_files == ["raw", "raw/users.parquet"]


def test_a_retry_waiting_for_its_backoff_does_not_hold_back_other_objects(tmp_path: Path) -> None:
    folder = tmp_path / "backoff"
    write_yaml(
        folder,
        """
retry: {attempts: 2, backoff_s: 600, max_backoff_s: 600}
objects:
  - {id: 1001, name: flaky, python: "steps:flaky"}
  - {id: 1002, name: base, python: "steps:base"}
  - {id: 2001, name: after_flaky, parents: [1001], sql: "select * from flaky"}
  - {id: 2002, name: cleaned, parents: [1002], sql: "select * from base"}
  - {id: 3001, name: flaky_total, parents: [2001], sql: "select count(*) as n from after_flaky"}
  - {id: 3002, name: total, parents: [2002], sql: "select count(*) as n from cleaned"}
""",
    )
    # base starts its work only once the coordinator has scheduled flaky's retry, so the whole sibling
    # branch runs while flaky waits for its (long) backoff.
    (folder / "steps.py").write_text(
        "import time\nfrom pathlib import Path\nimport pyarrow as pa\n"
        "def flaky():\n    raise ConnectionError('the source is down')\n"
        "def base():\n"
        "    deadline = time.monotonic() + 60\n"
        "    while not Path(__file__).with_name('retrying').exists():\n"
        "        if time.monotonic() > deadline:\n"
        "            raise RuntimeError('flaky was never scheduled for a retry')\n"
        "        time.sleep(0.02)\n"
        "    return pa.table({'id': [1, 2, 3]})\n"
    )
    project = load(folder)
    coordinators: list[Coordinator] = []
    flaky_when_branch_done: list[tuple[str, int]] = []

    def observe(event: ev.Event) -> None:
        if isinstance(event, ev.ObjectFailed) and event.object_id == 1001:
            (folder / "retrying").touch()
        if isinstance(event, ev.ObjectLoaded) and event.object_id == 3002:
            flaky = coordinators[0].states[1001]
            flaky_when_branch_done.append((flaky.status, flaky.attempt))
            coordinators[0].cancel()  # done: the retry itself would wait ten minutes

    summary = run_project(project, RunOptions(), observer=observe, on_start=coordinators.append)
    assert flaky_when_branch_done == [("retrying", 1)]
    assert summary.status == "cancelled"
    assert [summary.objects[oid].status for oid in (1002, 2002, 3002)] == ["loaded"] * 3
    assert summary.objects[3002].rows == 1
    flaky = summary.objects[1001]
    assert (flaky.status, flaky.attempt, flaky.reason) == ("skipped", 1, "run cancelled")
    assert (flaky.error or "").startswith("ConnectionError: the source is down (at ")


def test_a_redelivered_object_whose_outcome_is_recorded_is_not_run_again(tmp_path: Path) -> None:
    """After a rebalance, a message whose first worker finished it (outcome applied) comes back: it is committed
    without running the object again; an object still in flight in the same run does run."""
    folder = tmp_path / "settled"
    write_yaml(
        folder,
        """
objects:
  - {id: 1001, name: done_before, python: "steps:count"}
  - {id: 1002, name: in_flight, python: "steps:count"}
""",
    )
    (folder / "steps.py").write_text(
        "from pathlib import Path\nimport pyarrow as pa\n"
        "def count():\n"
        "    with Path(__file__).with_name('calls').open('a') as f:\n"
        "        f.write('x')\n"
        "    return pa.table({'id': [1]})\n"
    )
    project = load(folder)
    run_id = "r-settled"
    topic = ev.ready_topic("ingest")
    with open_backends(project) as backends:
        record = RunRecord(run_id=run_id, project=project.name, status="running", started_at=time.time())
        backends.state.create_run(
            record,
            [
                ObjectState(1001, "ingest", status="loaded", attempt=1, rows=1),
                ObjectState(1002, "ingest", status="running", attempt=1),
            ],
        )
        coordinator = run_lease(backends.state, project.name, run_id)  # a run started by hand: its live coordinator
        coordinator.hold()  # holds its lease, or the worker would mark the run interrupted and skip its work
        first = backends.bus.end_offset(ev.EVENTS_TOPIC)
        backends.bus.publish(
            topic,
            [
                (str(oid), ev.encode(ev.ObjectReady(run_id=run_id, object_id=oid, stage="ingest", attempt=1)))
                for oid in (1001, 1002)
            ],
        )
        worker = StageWorker(
            project,
            backends.bus,
            project.stage("ingest"),
            ObjectExecutor(project, backends.lake),
            run_active=RunActivity(backends.state),
        )
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: backends.bus.lag("workers.ingest", topic) == 0, 30, "the worker to settle both messages")
        finally:
            worker.stop()
            thread.join(30)
            coordinator.release()
        published = [ev.decode(m.value) for m in backends.bus.read(ev.EVENTS_TOPIC, first, 100)]
    assert (folder / "calls").read_text() == "x", "only the object in flight runs"
    assert [(type(e).__name__, getattr(e, "object_id", None)) for e in published] == [
        ("ObjectStarted", 1002),
        ("ObjectLoaded", 1002),
    ]
