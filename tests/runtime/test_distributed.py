"""Distributed runs: a coordinator and two worker processes per stage, over the embedded bus and over Kafka.

Every process is a real ``sluice`` OS process; failures are real too (``kill -9`` of a worker in the middle
of an object, the Kafka broker stopped and started again). Each Kafka test works in a namespace of its own
(``?namespace=`` in the bus URL), so its topics and consumer groups are its own.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException

from helpers import REPO, check_ordering, free_port, load, scrape, seed_project, summary_json, wait_for, write_yaml
from servers_fixtures import delete_kafka_namespace, unavailable
from sluice import events as ev
from sluice.bus.base import Bus
from sluice.bus.dead_letter import DeadLetter, parse_dead_letter
from sluice.bus.kafka import KafkaBus
from sluice.bus.kafka_common import TRANSIENT
from sluice.bus.registry import open_bus
from sluice.errors import RunNotFound
from sluice.project.model import Project
from sluice.runtime.history import run_events
from sluice.runtime.run import Backends, open_backends

SLUICE = [sys.executable, "-m", "sluice"]
STAGES = ("ingest", "standardize", "application")
KAFKA_SCRIPT = REPO / "scripts" / "servers" / "kafka.sh"
RUN_TIMEOUT_S = 120
SEED_FAILED = {2005}
SEED_SKIPPED = {3004, 3006}


@pytest.fixture(params=["sqlite", "kafka"])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The bus of one test: a fresh embedded log, or a fresh namespace on the test Kafka broker."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bus.db'}"
    kafka: str = request.getfixturevalue("kafka_url")
    return with_namespace(kafka)


def with_namespace(kafka: str) -> str:
    return kafka + ("&" if "?" in kafka else "?") + f"namespace=test-{uuid.uuid4().hex[:12]}"


class Cluster:
    """The processes of one distributed run: stage workers and a coordinator, with their logs."""

    def __init__(self, path: Path, bus_url: str, logs: Path) -> None:
        self.path = path
        self.bus_url = bus_url
        self.logs = logs
        self.logs.mkdir(exist_ok=True)
        self.workers: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self.metrics_ports: dict[int, int] = {}
        self.coordinator: subprocess.Popen[str] | None = None

    def start_workers(self, per_stage: int = 2, metrics: bool = False) -> None:
        # Create the state store (and an embedded bus) first: six processes creating one SQLite file at
        # once have failed (rarely, under load) with "database is locked" while it switched to WAL.
        with open_backends(load(self.path), self.bus_url):
            pass
        for stage in STAGES:
            for _ in range(per_stage):
                command = [*SLUICE, "worker", str(self.path), "--stage", stage, "--bus", self.bus_url]
                port = free_port() if metrics else None
                if port is not None:
                    command += ["--metrics-port", str(port)]
                log = (self.logs / f"worker-{stage}-{len(self.workers)}.log").open("wb")
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                log.close()
                self.workers[process.pid] = (stage, process)
                if port is not None:
                    self.metrics_ports[process.pid] = port

    def start_coordinator(self, *options: str) -> None:
        command = [*SLUICE, "run", str(self.path), "--workers", "external", "--json", "--bus", self.bus_url, *options]
        self.coordinator = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self) -> dict[str, Any]:
        """Wait for the coordinator; its JSON summary."""
        assert self.coordinator is not None
        try:
            out, err = self.coordinator.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.coordinator.kill()
            out, err = self.coordinator.communicate(timeout=10)
            raise AssertionError(
                f"the run on {self.bus_url} did not finish in {RUN_TIMEOUT_S}s:\n{err[-3000:]}\n{self.worker_logs()}\n"
                f"{self.bus_state()}"
            ) from None
        assert self.coordinator.returncode in (0, 1), f"coordinator exit {self.coordinator.returncode}:\n{err[-3000:]}"
        return summary_json(out)

    def kill(self, pid: int) -> None:
        _, process = self.workers.pop(pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop_workers(self) -> dict[int, int | None]:
        """SIGTERM every worker; their exit codes (None: still running after a minute, then killed).

        A worker finishes the object in hand for up to 10 s, then commits and leaves its group (up to 15 s).
        """
        for _, process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[int, int | None] = {}
        for pid, (_, process) in self.workers.items():
            try:
                codes[pid] = process.wait(60)
            except subprocess.TimeoutExpired:
                codes[pid] = None
                process.kill()
                process.wait(10)
        self.workers.clear()
        return codes

    def close(self) -> None:
        for _, process in self.workers.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if self.coordinator is not None and self.coordinator.poll() is None:
            self.coordinator.kill()
            self.coordinator.communicate(timeout=10)

    def bus_state(self) -> str:
        """What the bus holds, for a failure message: uncommitted work per stage and partition, the last events."""
        try:
            bus = open_bus(self.bus_url)
            try:
                end = bus.end_offset(ev.EVENTS_TOPIC)
                last = [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC, max(0, end - 20), 20)]
                lines = [f"{type(e).__name__} {getattr(e, 'object_id', '')} {getattr(e, 'worker', '')}" for e in last]
                return f"uncommitted work: {uncommitted(bus)}\nlast events (of {end}):\n" + "\n".join(lines)
            finally:
                bus.close()
        except Exception as exc:  # a diagnostic must not hide the failure it explains
            return f"(could not read the bus: {exc})"

    def worker_logs(self) -> str:
        """The end of each worker's log, without the repeated reconnection noise of a Kafka client."""
        noise = ("Connection refused", "METADATAUPDATE", "Connect to ipv4")
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            lines = [line for line in path.read_text(errors="replace").splitlines() if not any(n in line for n in noise)]
            parts.append(f"--- {path.name}\n" + "\n".join(lines[-30:]))
        return "\n".join(parts)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[list[Cluster]]:
    """The test's clusters; afterwards their processes are stopped and their Kafka namespaces deleted."""
    clusters: list[Cluster] = []
    yield clusters
    for cluster in clusters:
        cluster.close()
    for url in {cluster.bus_url for cluster in clusters}:
        delete_kafka_namespace(url)


def new_cluster(clusters: list[Cluster], path: Path, bus_url: str, tmp_path: Path) -> Cluster:
    cluster = Cluster(path, bus_url, tmp_path / "logs")
    clusters.append(cluster)
    return cluster


def wait_until_workers_joined(bus_url: str, per_stage: int = 2) -> None:
    """On Kafka, wait until every stage's group is stable with its workers, so no rebalance moves work mid-run."""
    if not bus_url.startswith("kafka:"):
        return
    from confluent_kafka import ConsumerGroupState

    bus = open_bus(bus_url)
    assert isinstance(bus, KafkaBus)
    groups = [bus.kafka_name(f"workers.{stage}") for stage in STAGES]

    def joined() -> bool:
        for future in bus.admin.describe_consumer_groups(groups, request_timeout=5).values():
            try:
                group = future.result()
            except KafkaException as exc:
                if exc.args[0].code() in TRANSIENT:  # a broker just started is still electing its group coordinators
                    return False
                raise
            if group.state != ConsumerGroupState.STABLE or len(group.members) != per_stage:
                return False
        return True

    try:
        wait_for(joined, 90, f"{per_stage} workers per stage to join their groups")
    finally:
        bus.close()


def run_log(backends: Backends, project: Project, run_id: str | None = None) -> list[tuple[int, ev.AnyEvent]]:
    """The run's events so far ([] before it exists)."""
    try:
        return list(run_events(backends, project, run_id))
    except RunNotFound:
        return []


def worker_pid(worker: str) -> int:
    """The process id in a worker's name (``stage@host:pid:n``)."""
    return int(worker.rsplit(":", 2)[1])


def check_parents_first(project: Project, log: list[tuple[int, ev.AnyEvent]]) -> None:
    """No ObjectReady before every parent is loaded; unlike check_ordering, a redelivered object may report twice."""
    done: set[int] = set()
    for _, event in log:
        if isinstance(event, ev.ObjectReady):
            missing = [p for p in project.objects[event.object_id].parents if p not in done]
            assert not missing, f"ObjectReady for {event.object_id} before parents {missing} loaded"
        elif isinstance(event, ev.ObjectLoaded):
            done.add(event.object_id)


def assert_seed_outcome(summary: dict[str, Any]) -> None:
    """The seed-002 scenario with --fail 2005: 2005 failed after its 3 attempts, its descendants skipped, the rest loaded."""
    objects = summary["objects"]
    statuses = {int(oid): o["status"] for oid, o in objects.items()}
    assert summary["status"] == "failed"
    assert {oid for oid, s in statuses.items() if s == "failed"} == SEED_FAILED
    assert objects["2005"]["attempts"] == 3 and "forced failure" in objects["2005"]["error"]
    assert {oid for oid, s in statuses.items() if s == "skipped"} == SEED_SKIPPED
    assert objects["3004"]["reason"] == "parent 2005 failed"
    assert {oid for oid, s in statuses.items() if s == "loaded"} == set(statuses) - SEED_FAILED - SEED_SKIPPED
    assert len(statuses) == 19


def uncommitted(bus: Bus) -> dict[str, dict[int, int]]:
    """Per stage and partition, the work messages its group has not committed (none listed: all committed)."""
    lags = {stage: bus.lag_by_partition(f"workers.{stage}", ev.ready_topic(stage)) for stage in STAGES}
    return {
        stage: {p: n for p, n in by_partition.items() if n} for stage, by_partition in lags.items() if any(by_partition.values())
    }


def assert_stopped_cleanly(cluster: Cluster, redelivered: bool = False) -> None:
    """SIGTERM the workers: each exits 0, having committed all it finished and left its group.

    With ``redelivered``, first wait until the workers have settled every work message: a message redelivered
    after a rebalance (its first worker died or lost its partitions) may still be in hand when the run ends, and
    a worker stopped then rightly leaves it uncommitted if it takes longer than the stop's grace period.
    """
    bus = open_bus(cluster.bus_url)
    try:
        if redelivered:
            try:
                wait_for(lambda: not uncommitted(bus), 60, "the workers to settle every redelivered message")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; left: {uncommitted(bus)}\n{cluster.worker_logs()}") from None
        codes = cluster.stop_workers()
        assert set(codes.values()) == {0}, f"workers must exit 0 on SIGTERM: {codes}\n{cluster.worker_logs()}"
        left = uncommitted(bus)
        assert not left, f"work messages left uncommitted: {left}\n{cluster.worker_logs()}"
        if isinstance(bus, KafkaBus):
            groups = [bus.kafka_name(f"workers.{stage}") for stage in STAGES]

            def members() -> list[int]:
                return [len(f.result().members) for f in bus.admin.describe_consumer_groups(groups, request_timeout=10).values()]

            # A member that lost its partitions (a broker restart longer than the session timeout) joins again
            # under a new member id; the broker forgets the old id once its session times out (10 s).
            if redelivered:
                wait_for(lambda: members() == [0, 0, 0], 30, "members left over from before the rebalance to expire")
            assert members() == [0, 0, 0], "stopped workers must leave their groups"
    finally:
        bus.close()


# ----- (a) the seed scenario -------------------------------------------------------------------


def test_seed_scenario_with_two_worker_processes_per_stage(tmp_path: Path, bus_url: str, cluster_factory: list[Cluster]) -> None:
    path = seed_project(tmp_path)
    cluster = new_cluster(cluster_factory, path, bus_url, tmp_path)
    cluster.start_workers()
    wait_until_workers_joined(bus_url)
    cluster.start_coordinator("--simulate", "--delay-scale", "0.02", "--fail", "2005")
    summary = cluster.finish()
    assert_seed_outcome(summary)
    project = load(path)
    with open_backends(project, bus_url) as backends:
        log = run_log(backends, project, summary["run_id"])
    check_ordering(project, log)
    starts = [e for _, e in log if isinstance(e, ev.ObjectStarted)]
    worker_pids = {worker_pid(e.worker) for e in starts}
    assert worker_pids <= set(cluster.workers), "every object was processed by one of the worker processes"
    for stage in STAGES:
        assert {e.worker.split("@")[0] for e in starts if e.stage == stage} == {stage}
    assert Counter(e.object_id for e in starts if e.object_id != 2005) == Counter(
        {int(oid) for oid, o in summary["objects"].items() if o["status"] == "loaded"}
    ), "each loaded object was started once"
    assert_stopped_cleanly(cluster)


# ----- (b) a worker killed in the middle of an object ------------------------------------------

REAL_WORK = """
name: distributed
lease_s: 2
retry: {attempts: 3, backoff_s: 0.2}
connections:
  out: sqlite:///out.db
objects:
  - {id: 1001, name: users, source: {type: faker, schema: users, rows: 50, seed: 3}}
  - {id: 1002, name: products, source: {type: faker, schema: products, rows: 20, seed: 4}}
  - id: 2001
    name: slow_users
    parents: [1001]
    python: "slow:run"
    destination: {connection: out, table: slow_users, mode: append}
  - id: 2002
    name: clean_products
    parents: [1002]
    sql: "select * from products"
    destination: {connection: out, table: clean_products, mode: append}
  - id: 3001
    name: totals
    parents: [2001, 2002]
    sql: "select (select count(*) from slow_users) as users, (select count(*) from clean_products) as products"
    destination: {connection: out, table: totals, mode: append}
"""

SLOW = """
import os, time
from pathlib import Path

def run(users):
    here = Path(__file__)
    here.with_name(f"started-{os.getpid()}").touch()
    seconds = here.with_name("slow_seconds")
    time.sleep(float(seconds.read_text()) if seconds.exists() else 4)
    return users
"""


def real_work_project(tmp_path: Path) -> Path:
    folder = tmp_path / "real"
    write_yaml(folder, REAL_WORK)
    (folder / "slow.py").write_text(SLOW)
    return folder


def assert_real_work_outcome(folder: Path, summary: dict[str, Any]) -> None:
    """Every object loaded once in effect: one copy of each output, one load recorded per table."""
    assert summary["status"] == "succeeded", summary
    objects = summary["objects"]
    assert {o["status"] for o in objects.values()} == {"loaded"}
    assert [objects[oid]["rows"] for oid in ("1001", "1002", "2001", "2002", "3001")] == [50, 20, 50, 20, 1]
    with sqlite3.connect(folder / "out.db") as conn:
        assert conn.execute("select users, products from totals").fetchall() == [(50, 20)]
        assert conn.execute("select count(*) from slow_users").fetchone()[0] == 50
        assert conn.execute("select count(*) from clean_products").fetchone()[0] == 20
        loads = conn.execute("select table_name, load_id from _sluice_loads order by table_name").fetchall()
    run_id = summary["run_id"]
    assert [(table.split(".")[-1], load_id) for table, load_id in loads] == [
        ("clean_products", f"{run_id}:2002"),
        ("slow_users", f"{run_id}:2001"),
        ("totals", f"{run_id}:3001"),
    ]
    lake = folder / ".sluice" / "lake"
    files = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*") if p.is_file() and not p.name.startswith("."))
    # A worker killed while writing leaves its hidden temporary file (removed by a later write once stale).
    assert all(p.suffix == ".tmp" for p in lake.rglob(".*")), "only temporaries are hidden"
    assert files == [
        "cleaned/clean_products.parquet",
        "cleaned/slow_users.parquet",
        "curated/totals.parquet",
        "raw/products.parquet",
        "raw/users.parquet",
    ]


def test_worker_killed_mid_object_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, bus_url: str, cluster_factory: list[Cluster]
) -> None:
    folder = real_work_project(tmp_path)
    project = load(folder)
    cluster = new_cluster(cluster_factory, folder, bus_url, tmp_path)
    cluster.start_workers()
    wait_until_workers_joined(bus_url)
    cluster.start_coordinator()
    with open_backends(project, bus_url) as backends:
        victims: list[int] = []

        def slow_object_in_hand() -> bool:
            log = [e for _, e in run_log(backends, project)]
            started = [e for e in log if isinstance(e, ev.ObjectStarted) and e.object_id == 2001]
            finished = [e for e in log if isinstance(e, ev.ObjectLoaded | ev.ObjectFailed) and e.object_id == 2001]
            if started and not finished and (folder / f"started-{worker_pid(started[0].worker)}").exists():
                victims.append(worker_pid(started[0].worker))  # in hand, and inside its work (slow.py has begun)
            return bool(victims)

        wait_for(slow_object_in_hand, 60, "a worker to start the slow object")
    victim = victims[0]
    assert cluster.workers[victim][0] == "standardize"
    cluster.kill(victim)
    summary = cluster.finish()
    assert_stopped_cleanly(cluster, redelivered=True)  # first, so that no redelivered object is still being written
    assert_real_work_outcome(folder, summary)
    assert summary["objects"]["2001"]["attempts"] == 1, "a redelivery is not a new attempt"
    with open_backends(project, bus_url) as backends:
        positioned = run_log(backends, project, summary["run_id"])
    check_ordering(project, positioned)
    log = [e for _, e in positioned]
    starts = [e for e in log if isinstance(e, ev.ObjectStarted) and e.object_id == 2001]
    loads = [e for e in log if isinstance(e, ev.ObjectLoaded) and e.object_id == 2001]
    assert len(starts) == 2 and worker_pid(starts[0].worker) == victim
    assert len(loads) == 1 and loads[0].worker == starts[1].worker != starts[0].worker
    survivor = worker_pid(loads[0].worker)
    assert sorted(p.name for p in folder.glob("started-*")) == sorted(f"started-{pid}" for pid in (victim, survivor))


# ----- (d) malformed messages are dead-lettered ------------------------------------------------


def test_malformed_messages_are_dead_lettered_and_the_run_succeeds(
    tmp_path: Path, bus_url: str, cluster_factory: list[Cluster]
) -> None:
    path = seed_project(tmp_path)
    project = load(path)
    cluster = new_cluster(cluster_factory, path, bus_url, tmp_path)
    coordinator_port = free_port()
    cluster.start_coordinator("--simulate", "--delay-scale", "0.02", "--fail", "2005", "--metrics-port", str(coordinator_port))
    bad_events = [("1001", b"not json at all"), ("1003", b'{"type": "ObjectLoaded", "run_id": "x"}'), (None, b"\xff\xfe")]
    bad_work = {
        "ingest": [("1001", b"garbage"), ("1999", ev.encode(ev.ObjectReady(run_id="r", object_id=1999, stage="ingest")))],
        "standardize": [("2001", b"{}")],
    }
    with open_backends(project, bus_url) as backends:
        # Once the run exists its coordinator reads sluice.events from before these messages.
        wait_for(lambda: bool(backends.state.list_runs(project.name, 1)), 60, "the run to start")
        run_id = backends.state.list_runs(project.name, 1)[0].run_id
        backends.bus.publish(ev.EVENTS_TOPIC, bad_events)
        for stage, messages in bad_work.items():
            backends.bus.publish(ev.ready_topic(stage), messages)

        def coordinator_dead_letters() -> float:
            return scrape(coordinator_port, "sluice_bus_dead_letters_total", {"topic": ev.EVENTS_TOPIC})

        wait_for(lambda: coordinator_dead_letters() == len(bad_events), 60, "the coordinator to dead-letter 3 events")
        cluster.start_workers(metrics=True)
        summary = cluster.finish()
        assert_seed_outcome(summary)
        assert summary["run_id"] == run_id
        # Workers join while work is waiting: on Kafka a rebalance may hand an object to a second worker.
        check_parents_first(project, run_log(backends, project, run_id))

        def dead_letters() -> list[DeadLetter]:
            return [parse_dead_letter(m.value) for m in backends.bus.read(ev.DEAD_LETTER_TOPIC, 0, 1000)]

        expected = len(bad_events) + sum(len(messages) for messages in bad_work.values())
        wait_for(lambda: len(dead_letters()) >= expected, 30, f"{expected} dead letters")
        letters = {(d.topic, d.key, d.value): d for d in dead_letters()}
    assert len(letters) == expected
    for key, value in bad_events:
        letter = letters[ev.EVENTS_TOPIC, key, value]
        assert letter.group == f"coordinator.{run_id}" and letter.reason.startswith("not a Sluice event"), letter
    for stage, messages in bad_work.items():
        for key, value in messages:
            letter = letters[ev.ready_topic(stage), key, value]
            assert letter.group == f"workers.{stage}", letter
            if key == "1999":
                assert "object 1999 is not defined in project" in letter.reason
            else:
                assert letter.reason.startswith("not a Sluice event"), letter
    for stage, count in {"ingest": 2, "standardize": 1, "application": 0}.items():
        topic = ev.ready_topic(stage)
        counted = sum(
            scrape(port, "sluice_bus_dead_letters_total", {"topic": topic})
            for pid, port in cluster.metrics_ports.items()
            if cluster.workers[pid][0] == stage
        )
        assert counted == count, f"{stage}: {counted} dead letters counted, {count} expected"
    assert_stopped_cleanly(cluster)


# ----- (c) the broker stopped and started mid-run (Kafka only; keep last) ----------------------


def object_status(folder: Path, object_id: int) -> str:
    """The object's status in the latest run, from the project's state store."""
    from sluice.state.sqlite import SqliteStateStore

    store = SqliteStateStore(folder / ".sluice" / "state.db")
    try:
        run = store.list_runs(limit=1)[0]
        return store.object_states(run.run_id)[object_id].status
    finally:
        store.close()


def kafka_script(command: str) -> str:
    # A loaded machine can take more than the script's default minute to restart the broker.
    env = {**os.environ, "SLUICE_SERVER_TIMEOUT": os.environ.get("SLUICE_SERVER_TIMEOUT", "240")}
    done = subprocess.run([str(KAFKA_SCRIPT), command], capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, f"kafka.sh {command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


@pytest.mark.serial  # stops the shared broker: every other Kafka test would see it gone
def test_kafka_broker_restarted_mid_run_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, kafka_url: str, cluster_factory: list[Cluster]
) -> None:
    if os.environ.get("SLUICE_TEST_KAFKA_URL", "").strip():
        unavailable("SLUICE_TEST_KAFKA_URL points at a broker this test cannot stop and start; unset it to run this test")
    bus_url = with_namespace(kafka_url)
    folder = real_work_project(tmp_path)
    (folder / "slow_seconds").write_text("10")  # longer than stopping the broker takes
    cluster = new_cluster(cluster_factory, folder, bus_url, tmp_path)
    cluster.start_workers()
    wait_until_workers_joined(bus_url)
    cluster.start_coordinator()
    try:
        wait_for(lambda: any(folder.glob("started-*")), 60, "a worker to start the slow object")
        kafka_script("stop")  # while the slow object runs: its outcome, and what follows, wait for the broker
        slow_status = object_status(folder, 2001)
        kafka_script("start")
        summary = cluster.finish()
    finally:
        kafka_script("start")  # idempotent: the broker is up for whatever runs next
    assert slow_status in ("ready", "running"), "the slow object's outcome must have gone through the restarted broker"
    assert_stopped_cleanly(cluster, redelivered=True)  # first, so that no redelivered object is still being written
    assert_real_work_outcome(folder, summary)
    project = load(folder)
    with open_backends(project, bus_url) as backends:
        log = run_log(backends, project, summary["run_id"])
    check_parents_first(project, log)
    readies = Counter((e.object_id, e.attempt) for _, e in log if isinstance(e, ev.ObjectReady))
    assert set(readies.values()) == {1}, f"each object handed out once: {readies}"
    assert sum(1 for _, e in log if isinstance(e, ev.RunFinished)) == 1
