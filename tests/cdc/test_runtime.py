"""The sync runtime (capture -> bus -> apply) over in-memory fakes of the plugins, on the embedded bus."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.cdc.fakes import POISON, FakeDb, FakeWorld, schema

from sluice.bus.base import Bus
from sluice.bus.embedded import EmbeddedBus
from sluice.bus.registry import open_bus
from sluice.cdc.base import PositionLost
from sluice.cdc.config import SyncSettings
from sluice.cdc.events import SnapshotRows, change_topic, decode
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.state import request_resync, resync_requests
from sluice.cdc.status import SyncStatus, read_status

URLS = {"src": "mysql://u@h/app", "dst": "postgresql://u@h/dw"}


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    bus = EmbeddedBus(str(tmp_path / "bus.db"))
    yield bus
    bus.close()


def make_world(rows: int = 0, tables: tuple[str, ...] = ("emp", "dept")) -> FakeWorld:
    src, dst = FakeDb("src"), FakeDb("dst")
    for name in tables:
        src.create(schema("app", name))
        for i in range(rows):
            src.write(f"app.{name}", {"id": i, "name": f"n{i}", "n": i})
    return FakeWorld({"src": src, "dst": dst})


def settings(**overrides: Any) -> SyncSettings:
    base: dict[str, Any] = {"name": "s1", "source": "src", "target": "dst", "tables": ["emp", "dept"], "chunk_rows": 7}
    base.update(overrides)
    return msgspec.convert(base, SyncSettings)


def runtime(world: FakeWorld, bus: Bus, tmp_path: Path, sync: SyncSettings | None = None, **kw: Any) -> SyncRuntime:
    return SyncRuntime(
        sync or settings(),
        URLS,
        bus,
        tmp_path / ".sluice",
        capture_factory=world.capture,
        apply_factory=world.apply,
        workers=2,
        **kw,
    )


def same(world: FakeWorld, table: str, target: str | None = None, a: str = "src", b: str = "dst") -> bool:
    return world.dbs[a].snapshot_rows(f"app.{table}") == world.dbs[b].snapshot_rows(target or f"public.{table}")


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def in_thread(rt: SyncRuntime) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(rt.run())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def writer(db: FakeDb, stop: threading.Event, seed: int, tables: tuple[str, ...] = ("emp", "dept")) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        table = f"app.{rng.choice(tables)}"
        key = rng.randrange(60)
        if rng.random() < 0.25:
            db.write(table, None, (key,))
        else:
            db.write(table, {"id": key, "name": f"w{rng.randrange(1000)}", "n": rng.randrange(10**6)})
        time.sleep(0.0005)


def test_once_copies_snapshot_then_exits(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=30)
    status = runtime(world, bus, tmp_path, once=True).run()
    assert same(world, "emp") and same(world, "dept")
    emp = next(t for t in status.tables if t.source_table == "app.emp")
    assert emp.applied == {"snapshot": 30} and emp.snapshot_rows == 30
    assert status.state == "stopped"
    on_disk = read_status(tmp_path / ".sluice", "s1")
    assert on_disk is not None and on_disk.tables[0].applied


def test_snapshot_then_stream_while_writing_converges(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=50)
    rt = runtime(world, bus, tmp_path)
    stop = threading.Event()
    w = threading.Thread(target=writer, args=(world.dbs["src"], stop, 1))
    w.start()
    thread, out = in_thread(rt)
    time.sleep(1.0)
    stop.set()
    w.join()
    wait_for(lambda: same(world, "emp") and same(world, "dept"))
    rt.stop()
    thread.join(10)
    assert isinstance(out[0], SyncStatus)
    captured = {t.source_table: t.captured for t in out[0].tables}
    assert captured["app.emp"].get("snapshot", 0) >= 1 and sum(captured["app.emp"].values()) > 50


def test_restart_resumes_without_snapshot_again(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=20)
    runtime(world, bus, tmp_path, once=True).run()
    src = world.dbs["src"]
    src.write("app.emp", {"id": 3, "name": "changed", "n": 0})
    src.write("app.emp", None, (4,))
    src.write("app.dept", {"id": 100, "name": "new", "n": 1})
    status = runtime(world, bus, tmp_path, once=True).run()
    assert same(world, "emp") and same(world, "dept")
    emp = next(t for t in status.tables if t.source_table == "app.emp")
    assert emp.captured == {"update": 1, "delete": 1}


def test_once_applies_a_change_committed_just_before_it_started(bus: EmbeddedBus, tmp_path: Path) -> None:
    """``--once`` reads up to the source's end position, not its position now: PostgreSQL's position now (the
    written WAL) can be behind a commit that already returned, and a run that stopped there applied nothing."""
    world = make_world(rows=5)
    runtime(world, bus, tmp_path, once=True).run()
    src = world.dbs["src"]
    src.position_lag = 1  # the last commit is not in the position now
    for n in range(3):
        src.write("app.emp", {"id": 1, "name": f"changed {n}", "n": n})
        status = runtime(world, bus, tmp_path, once=True).run()
        emp = next(t for t in status.tables if t.source_table == "app.emp")
        assert emp.applied == {"update": 1} and same(world, "emp"), (n, emp.applied)


def snapshot_until(world: FakeWorld, bus: EmbeddedBus, tmp_path: Path, sync: SyncSettings, rows: int) -> list[int]:
    """Run until the snapshot has published ``rows`` rows, then stop; the progress counts seen."""
    rt = runtime(world, bus, tmp_path, sync)
    seen: list[int] = []

    def progress(direction: str, table: str, done: int, total: int | None, seconds: float, read: int, last: bool) -> None:
        seen.append(done)
        if done >= rows:
            rt.stop()

    rt.on_progress = progress
    rt.run()
    return seen


def test_interrupted_snapshot_resumes_after_its_last_chunk(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=40, tables=("emp",))
    sync = settings(tables=["emp"], chunk_rows=10)
    assert snapshot_until(world, bus, tmp_path, sync, 20) == [10, 20]
    rt2 = runtime(world, bus, tmp_path, sync, once=True)
    shown: list[tuple[int, int, bool]] = []
    rt2.on_progress = lambda direction, table, rows, total, seconds, read, last: shown.append((rows, read, last))
    status = rt2.run()
    assert same(world, "emp")
    assert status.tables[0].captured == {"snapshot": 20}
    # The resumed run's progress: rows in all, rows it read itself (its rate's), and its last chunk said once.
    assert shown == [(30, 10, False), (40, 20, True)], shown


def test_interrupted_bulk_snapshot_resumes_and_counts_right(bus: EmbeddedBus, tmp_path: Path, monkeypatch: Any) -> None:
    """Chunks as value lists, published as SnapshotRows of at most 4 rows: stopped after two chunks, resumed."""
    import sluice.cdc.snapshot_messages as loop

    monkeypatch.setattr(loop, "MESSAGE_ROWS", 4)
    world = make_world(rows=45, tables=("emp",))
    world.dbs["src"].bulk_snapshot = True
    sync = settings(tables=["emp"], chunk_rows=10)
    assert snapshot_until(world, bus, tmp_path, sync, 20) == [10, 20]
    topic = change_topic("s1", "src", "app.emp")
    first = [decode(m.value) for m in bus.read(topic, 0, 100)]
    assert all(isinstance(m, SnapshotRows) for m in first)
    assert [len(m.rows) for m in first if isinstance(m, SnapshotRows)] == [4, 4, 2, 4, 4, 2]
    rt2 = runtime(world, bus, tmp_path, sync, once=True)
    status = rt2.run()
    assert same(world, "emp")
    emp = status.tables[0]
    assert emp.captured == {"snapshot": 25} and emp.snapshot_rows == 25 and emp.state != "error"
    keys = [m.rows[0][0] for m in (decode(v.value) for v in bus.read(topic, 0, 100)) if isinstance(m, SnapshotRows)]
    assert keys == sorted(keys) and len(keys) == len(set(keys))  # no chunk published twice


def test_snapshot_stopped_half_way_under_writes_streams_nothing_and_resumes_without_loss(
    bus: EmbeddedBus, tmp_path: Path
) -> None:
    """The trial's data loss: writes during a snapshot, stopped after two of five chunks. Nothing of the stream
    is published before the snapshot is complete (else apply stores a stream position newer than the chunks still
    to come and skips them); the table is not ``streaming``; the restart resumes and loses nothing."""
    world = make_world(rows=50, tables=("emp",))
    src = world.dbs["src"]
    src.bulk_snapshot = True
    sync = settings(tables=["emp"], chunk_rows=10)
    rt = runtime(world, bus, tmp_path, sync)

    def progress(direction: str, table: str, done: int, total: int | None, seconds: float, read: int, last: bool) -> None:
        if done == 10:  # changes to rows read already and to rows not read yet
            src.write("app.emp", {"id": 5, "name": "during", "n": -1})
            src.write("app.emp", {"id": 35, "name": "during", "n": -1})
            src.write("app.emp", None, (30,))
            src.write("app.emp", {"id": 100, "name": "new", "n": 1})
        if done >= 20:
            rt.stop()

    rt.on_progress = progress
    status = rt.run()
    assert status.tables[0].state != "streaming"
    messages = [decode(m.value) for m in bus.read(change_topic("s1", "src", "app.emp"), 0, 1000)]
    assert messages and all(isinstance(m, SnapshotRows) for m in messages), messages
    src.write("app.emp", {"id": 45, "name": "after", "n": 2})
    runtime(world, bus, tmp_path, sync, once=True).run()
    assert same(world, "emp")


def test_kill_at_random_moments_then_restart_converges(bus: EmbeddedBus, tmp_path: Path) -> None:
    """Stop the runtime abruptly (threads abandoned mid-batch) over and over while a writer runs."""
    world = make_world(rows=40)
    stop = threading.Event()
    w = threading.Thread(target=writer, args=(world.dbs["src"], stop, 2))
    w.start()
    rng = random.Random(3)
    for _ in range(4):
        rt = runtime(world, bus, tmp_path)
        thread, _ = in_thread(rt)
        time.sleep(rng.uniform(0.05, 0.4))
        rt.stop()
        thread.join(10)
    stop.set()
    w.join()
    runtime(world, bus, tmp_path, once=True).run()
    assert same(world, "emp") and same(world, "dept")


def test_table_error_stops_that_table_only_and_resync_clears_it(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=5)
    runtime(world, bus, tmp_path, once=True).run()
    src = world.dbs["src"]
    src.alter("app.emp", "other")
    src.write("app.emp", {"id": 50, "name": "after ddl", "n": 1})
    src.write("app.dept", {"id": 50, "name": "flows", "n": 1})
    status = runtime(world, bus, tmp_path, once=True).run()
    by_table = {t.source_table: t for t in status.tables}
    assert by_table["app.emp"].state == "error" and "cannot apply other" in by_table["app.emp"].error
    assert by_table["app.dept"].state == "streaming" and same(world, "dept")
    assert not same(world, "emp")
    request_resync(tmp_path / ".sluice", "s1", "app.emp")
    status = runtime(world, bus, tmp_path, once=True).run()
    by_table = {t.source_table: t for t in status.tables}
    assert by_table["app.emp"].state == "streaming" and same(world, "emp")


def test_resync_the_target_refuses_stops_that_table_only(bus: EmbeddedBus, tmp_path: Path) -> None:
    """The reset of a resync done by capture's thread (apply in the same process) failing for one table stops
    that table, not the whole sync; a resync that succeeds later clears it."""
    world = make_world(rows=5)
    runtime(world, bus, tmp_path, once=True).run()
    dst = world.dbs["dst"]
    dst.bad_schema_tables.add("app.emp")
    world.dbs["src"].write("app.dept", {"id": 50, "name": "flows", "n": 1})
    request_resync(tmp_path / ".sluice", "s1", "app.emp")
    status = runtime(world, bus, tmp_path, once=True).run()
    by_table = {t.source_table: t for t in status.tables}
    assert by_table["app.emp"].state == "error" and "cannot apply resync" in by_table["app.emp"].error
    assert by_table["app.dept"].state == "streaming" and same(world, "dept")
    dst.bad_schema_tables.clear()
    request_resync(tmp_path / ".sluice", "s1", "app.emp")
    status = runtime(world, bus, tmp_path, once=True).run()
    assert all(t.state == "streaming" for t in status.tables) and same(world, "emp")


def test_poison_row_goes_to_dead_letters_and_the_rest_flows(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=5)
    src = world.dbs["src"]
    src.write("app.emp", {"id": 7, "name": POISON, "n": 1})
    src.write("app.emp", {"id": 8, "name": "fine", "n": 1})
    status = runtime(world, bus, tmp_path, once=True).run()
    emp = next(t for t in status.tables if t.source_table == "app.emp")
    assert emp.dead_letters == 1 and world.dbs["dst"].dead_letters == [("app.emp", [7], "poison value")]
    assert (8,) in world.dbs["dst"].rows["public.emp"] and (7,) not in world.dbs["dst"].rows["public.emp"]


def test_purged_position_is_one_clear_error_and_resnapshot_recovers(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=5)
    runtime(world, bus, tmp_path, once=True).run()
    src = world.dbs["src"]
    src.write("app.emp", {"id": 99, "name": "x", "n": 1})
    src.write("app.emp", None, (1,))
    src.purged = len(src.log)
    with pytest.raises(PositionLost, match="--resnapshot") as lost:
        runtime(world, bus, tmp_path, once=True).run()
    assert str(lost.value).count("--resnapshot") == 1 and "purged. Run 'sluice sync PATH --name s1" in str(lost.value)
    world.dbs["dst"].rows["public.emp"][(12345,)] = {"id": 12345, "name": "stale", "n": 0}
    runtime(world, bus, tmp_path, once=True, resnapshot=True).run()
    assert same(world, "emp") and same(world, "dept")


def test_when_needed_snapshots_again_after_a_purge(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=5)
    sync = settings(snapshot="when_needed")
    runtime(world, bus, tmp_path, sync, once=True).run()
    src = world.dbs["src"]
    src.write("app.emp", None, (2,))
    src.purged = len(src.log)
    runtime(world, bus, tmp_path, sync, once=True).run()
    assert same(world, "emp")


def test_rename_drop_and_mask(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = make_world(rows=3, tables=("emp",))
    sync = settings(tables=["app.e*"], rename={"emp": "staff"}, columns={"emp": {"drop": ["n"], "mask": ["name"]}})
    runtime(world, bus, tmp_path, sync, once=True).run()
    rows = world.dbs["dst"].rows["public.staff"]
    assert rows[(1,)] == {"id": 1, "name": "masked:n1"}


def both_world() -> FakeWorld:
    world = make_world(rows=5, tables=("emp",))
    return world


def test_both_ways_no_echo(bus: EmbeddedBus, tmp_path: Path) -> None:
    world = both_world()
    sync = settings(tables=["emp"], direction="both")
    runtime(world, bus, tmp_path, sync, once=True).run()
    dst = world.dbs["dst"]
    dst.write("public.emp", {"id": 1, "name": "from dst", "n": 5})
    world.dbs["src"].write("app.emp", {"id": 2, "name": "from src", "n": 6})
    status = runtime(world, bus, tmp_path, sync, once=True).run()
    assert same(world, "emp")
    assert world.dbs["src"].rows["app.emp"][(1,)]["name"] == "from dst"
    captured = {(t.direction, t.source_table): t.captured for t in status.tables}
    # Each side captured only its own change: the sync's writes were not captured back.
    assert captured[("src -> dst", "app.emp")] == {"update": 1}
    assert captured[("dst -> src", "public.emp")] == {"update": 1}


def test_resync_request_no_capture_can_match_is_dropped_with_a_warning(
    bus: EmbeddedBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both ways: the request of one direction's table waits for that direction's capture (the other does not
    drop it); one no capture of the sync has is logged and deleted (it used to stay forever)."""
    world = both_world()
    sync = settings(tables=["emp"], direction="both")
    runtime(world, bus, tmp_path, sync, once=True).run()
    request_resync(tmp_path / ".sluice", "s1", "app.emp")
    request_resync(tmp_path / ".sluice", "s1", "emp")
    with caplog.at_level("WARNING", logger="sluice.cdc.capture"):
        status = runtime(world, bus, tmp_path, sync, once=True).run()
    assert resync_requests(tmp_path / ".sluice", "s1") == []
    assert "resync of emp dropped: the sync has no such table" in caplog.text
    assert "resync of app.emp dropped" not in caplog.text
    captured = {(t.direction, t.source_table): t.captured for t in status.tables}
    assert captured[("src -> dst", "app.emp")] == {"snapshot": 5} and same(world, "emp")


def test_each_capture_is_prepared_with_its_tables_before_its_first_position(bus: EmbeddedBus, tmp_path: Path) -> None:
    """PostgreSQL sets REPLICA IDENTITY FULL in ``prepare``: it must come before the run's start position is read,
    or an update made before the stream opens would carry only its key as before image."""
    world = both_world()
    runtime(world, bus, tmp_path, settings(tables=["emp"], direction="both"), once=True).run()
    first_calls = {capture.side: capture.calls[:2] for capture in world.captures}
    assert first_calls == {
        "src": [("prepare", ["app.emp"]), ("position", [])],
        "dst": [("prepare", ["public.emp"]), ("position", [])],
    }


@pytest.mark.parametrize(("policy", "expected"), [("source-wins", "src"), ("target-wins", "dst"), ("newer-wins", "dst")])
def test_both_ways_conflict_policies(bus: EmbeddedBus, tmp_path: Path, policy: str, expected: str) -> None:
    world = both_world()
    sync = settings(tables=["emp"], direction="both", conflicts=policy)
    runtime(world, bus, tmp_path, sync, once=True).run()
    world.dbs["src"].write("app.emp", {"id": 1, "name": "src version", "n": 1})
    time.sleep(0.01)
    world.dbs["dst"].write("public.emp", {"id": 1, "name": "dst version", "n": 2})  # the newer one
    status = runtime(world, bus, tmp_path, sync, once=True).run()
    assert same(world, "emp")
    assert world.dbs["src"].rows["app.emp"][(1,)]["name"] == f"{expected} version"
    assert sum(t.conflicts for t in status.tables) >= 1
    assert (tmp_path / ".sluice" / "syncs" / "s1.conflicts.jsonl").read_text().count("\n") >= 1


def test_resync_works_with_capture_and_apply_in_separate_runtimes(bus: EmbeddedBus, tmp_path: Path) -> None:
    """Split mode (``--processes 2``): capture publishes a resync marker; apply resets the table when it reads it."""
    split_resync(bus, tmp_path)


@pytest.mark.kafka
def test_resync_across_separate_runtimes_on_kafka(kafka_ns_url: str, tmp_path: Path) -> None:
    """The same on Kafka, where apply must leave its group before moving it to the marker."""
    kafka = open_bus(kafka_ns_url)
    try:
        split_resync(kafka, tmp_path)
    finally:
        kafka.close()


def split_resync(bus: Bus, tmp_path: Path) -> None:
    world = make_world(rows=5)
    capture = runtime(world, bus, tmp_path, roles=("capture",))
    apply = runtime(world, bus, tmp_path, roles=("apply",))
    threads = [in_thread(capture)[0], in_thread(apply)[0]]
    try:
        wait_for(lambda: same(world, "emp") and same(world, "dept"))
        # Only snapshot rows were applied: apply learns from capture's progress that the snapshot is done.
        wait_for(lambda: {apply.state.table("src -> dst", t).state for t in ("app.emp", "app.dept")} == {"streaming"})
        src = world.dbs["src"]
        src.alter("app.emp", "other")
        src.write("app.emp", {"id": 50, "name": "after ddl", "n": 1})
        wait_for(lambda: apply.state.table("src -> dst", "app.emp").state == "error")
        world.dbs["dst"].rows["public.emp"][(12345,)] = {"id": 12345, "name": "stale", "n": 0}
        request_resync(tmp_path / ".sluice", "s1", "app.emp")
        wait_for(lambda: same(world, "emp"))
        src.write("app.emp", {"id": 51, "name": "streams", "n": 2})
        wait_for(lambda: same(world, "emp"))
        record = apply.state.table("src -> dst", "app.emp")
        assert record.state == "streaming" and not record.error
    finally:
        capture.stop()
        apply.stop()
        for thread in threads:
            thread.join(10)


@pytest.mark.parametrize("layout", ["one process", "capture and apply apart"])
def test_new_table_matching_a_pattern_is_applied_while_running(bus: EmbeddedBus, tmp_path: Path, layout: str) -> None:
    """A table created at the source while the sync runs, matching ``tables:``, is created in the target and
    applied without a restart, also when apply runs in another process (``--processes 2``, ``--role apply``)."""
    new_table_while_running(bus, tmp_path, split=layout != "one process")


@pytest.mark.kafka
def test_new_table_reaches_a_separate_apply_on_kafka(kafka_ns_url: str, tmp_path: Path) -> None:
    """The same with ``--role capture`` and ``--role apply`` on Kafka (possibly on two machines)."""
    kafka = open_bus(kafka_ns_url)
    try:
        new_table_while_running(kafka, tmp_path, split=True)
    finally:
        kafka.close()


def new_table_while_running(bus: Bus, tmp_path: Path, split: bool) -> None:
    world = make_world(rows=5)
    sync = settings(tables=["app.*"])
    roles: list[tuple[str, ...]] = [("capture",), ("apply",)] if split else [("capture", "apply")]
    runtimes = [runtime(world, bus, tmp_path, sync, roles=r) for r in roles]
    started = [in_thread(rt) for rt in runtimes]
    applier = runtimes[-1]
    try:
        wait_for(lambda: same(world, "emp") and same(world, "dept"))
        src = world.dbs["src"]
        src.create(schema("app", "extra"))
        src.alter("app.extra", "create")
        for i in range(3):
            src.write("app.extra", {"id": i, "name": f"x{i}", "n": i})
        wait_for(lambda: "public.extra" in world.dbs["dst"].tables and same(world, "extra"))
        src.write("app.extra", {"id": 1, "name": "changed", "n": 10})
        src.write("app.emp", {"id": 1, "name": "still flows", "n": 11})
        wait_for(lambda: same(world, "extra") and same(world, "emp"))
        wait_for(lambda: applier.state.table("src -> dst", "app.extra").state == "streaming")
        record = applier.state.table("src -> dst", "app.extra")
        assert record.target_table == "public.extra" and not record.error
        assert record.applied.get("insert") == 3 and record.applied.get("update") == 1
    finally:
        for rt in runtimes:
            rt.stop()
        for thread, _ in started:
            thread.join(10)
    for _, out in started:
        assert out and not isinstance(out[0], Exception), out


def test_a_table_copied_by_an_earlier_run_shows_its_snapshot_done(bus: EmbeddedBus, tmp_path: Path) -> None:
    """Its progress gauge is 1 and its status says done in a later run (a trial saw 0 under sluice serve --sync)."""
    from prometheus_client import REGISTRY

    from sluice.observability import cdc_metrics

    world = make_world(rows=5, tables=("emp",))
    sync = settings(tables=["emp"])
    runtime(world, bus, tmp_path, sync, once=True).run()
    cdc_metrics.SNAPSHOT_PROGRESS.labels("s1", "app.emp").set(0.0)  # as in a new process
    status = runtime(world, bus, tmp_path, sync, once=True).run()
    assert status.tables[0].snapshot_done and status.tables[0].snapshot_rows == 0
    assert REGISTRY.get_sample_value("sluice_cdc_snapshot_progress_ratio", {"sync": "s1", "table": "app.emp"}) == 1.0


def test_lag_grows_when_the_capture_of_a_separate_apply_stops(bus: EmbeddedBus, tmp_path: Path) -> None:
    """A user's alert on ``sluice_cdc_lag_seconds`` must fire when capture dies: apply that drained its topics
    used to show lag 0 for ever. It shows 0 while capture's heartbeats are recent, then their age, growing; a
    capture started again brings it back to 0."""
    world = make_world(rows=5)
    sync = settings(heartbeat_s=0.2)  # silent after 2 x 0.2 + 1 = 1.4 s without a heartbeat

    def lags(rt: SyncRuntime) -> list[float | None]:
        return [t.lag_s for t in rt.state.snapshot_status().tables]

    def start_capture() -> tuple[SyncRuntime, threading.Thread]:
        capture = runtime(world, bus, tmp_path, sync, roles=("capture",))
        return capture, in_thread(capture)[0]

    apply = runtime(world, bus, tmp_path, sync, roles=("apply",))
    apply_thread = in_thread(apply)[0]
    capture, capture_thread = start_capture()
    try:
        wait_for(lambda: {apply.state.table("src -> dst", t).state for t in ("app.emp", "app.dept")} == {"streaming"})
        time.sleep(2.0)  # several heartbeats read by apply
        assert lags(apply) == [0.0, 0.0]
        capture.stop()
        capture_thread.join(10)
        wait_for(lambda: all(lag is not None and lag > 1.4 for lag in lags(apply)))
        first = lags(apply)
        time.sleep(0.5)
        assert all(
            later is not None and earlier is not None and later > earlier
            for earlier, later in zip(first, lags(apply), strict=True)
        )
        capture, capture_thread = start_capture()
        wait_for(lambda: lags(apply) == [0.0, 0.0])
    finally:
        capture.stop()
        apply.stop()
        capture_thread.join(10)
        apply_thread.join(10)
