"""Sensors against the real things: a temporary folder, the S3 server, a sync's change topic on the embedded bus, a
second project's state store in PostgreSQL; the minimum interval with a fake clock; the cursor advancing only once
the request is recorded; the section's problems at their line."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.scheduling.scheduling_helpers import RecordingStarter

from helpers import logged, write_yaml
from sluice.cdc import events as cdc
from sluice.errors import ValidationFailed
from sluice.lake.s3 import s3_filesystem
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.run import Backends, open_backends
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.scheduler import FakeClock, Scheduler
from sluice.scheduling.sensors import Sensors, hosted_sensors
from sluice.state.base import RunRecord
from sluice.state.postgres import PostgresStateStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OBJECTS = """
objects:
  - {id: 1001, name: raw_orders}
  - {id: 2001, name: orders, parents: [1001]}
"""


Make = Callable[..., tuple[Project, Sensors, Backends]]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """``make(sensors_yaml, extra="")``: the project with those sensors, its Sensors and open backends."""
    with ExitStack() as stack:

        def make_(sensors_yaml: str, extra: str = "") -> tuple[Project, Sensors, Backends]:
            project = load_project(write_yaml(tmp_path / "p", f"name: p\n{extra}{OBJECTS}sensors:\n{sensors_yaml}"))
            backends = stack.enter_context(open_backends(project))
            hosted = Sensors(project, backends.state, backends.bus)
            stack.callback(hosted.close)
            return project, hosted, backends

        yield make_


def test_files_fire_on_new_or_changed_files_at_most_once_per_min_interval(make: Make) -> None:
    project, sensors, backends = make("  landing: {type: files, path: 'in/*.csv', targets: [orders], min_interval: 5m}\n")
    folder = project.root / "in"
    folder.mkdir()
    assert sensors.poll(T0) == []  # nothing there yet
    (folder / "a.csv").write_text("x\n")
    assert sensors.poll(T0 + timedelta(seconds=29)) == []  # looks at most every 30 s
    (folder / "notes.txt").write_text("ignored\n")
    [request] = sensors.poll(T0 + timedelta(seconds=30))
    assert request == RunRequest(
        "landing", "sensor", T0 + timedelta(seconds=30), (2001,), f"landing@{(T0 + timedelta(seconds=30)).isoformat()}"
    )
    assert request.options().as_dict()["trigger"] == "sensor"
    assert sensors.poll(T0 + timedelta(minutes=10)) == []  # nothing new
    (folder / "b.csv").write_text("y\n")
    assert sensors.poll(T0 + timedelta(minutes=10, seconds=30)) != []
    (folder / "a.csv").write_text("x changed\n")
    assert sensors.poll(T0 + timedelta(minutes=14)) == []  # 3.5 min since it fired: waits
    assert [r.name for r in sensors.poll(T0 + timedelta(minutes=15, seconds=30))] == ["landing"]
    cursor = backends.state.sensor_cursor("p", "landing")
    assert cursor is not None and sorted(cursor.value["seen"]) == ["in/a.csv", "in/b.csv"]
    assert cursor.fired_at == (T0 + timedelta(minutes=15, seconds=30)).timestamp()


def test_s3_fires_on_new_keys_under_the_prefix(make: Make, s3_url: str) -> None:
    bucket = f"sensor-{uuid.uuid4().hex[:8]}"
    fs = s3_filesystem(s3_url)
    fs.create_dir(bucket)
    _, sensors, _ = make(f"  drops:\n    type: s3\n    url: 's3://{bucket}/orders?endpoint={s3_url}'\n    min_interval: 0s\n")
    with fs.open_output_stream(f"{bucket}/other/x.csv") as out:
        out.write(b"elsewhere")
    assert sensors.poll(T0) == [] and sensors.errors == {}
    with fs.open_output_stream(f"{bucket}/orders/2026/a.csv") as out:
        out.write(b"a")
    assert [r.key for r in sensors.poll(T0 + timedelta(seconds=1))] == [f"drops@{(T0 + timedelta(seconds=1)).isoformat()}"]
    assert sensors.poll(T0 + timedelta(seconds=2)) == []
    with fs.open_output_stream(f"{bucket}/orders/2026/b.csv") as out:
        out.write(b"b")
    assert len(sensors.poll(T0 + timedelta(seconds=3))) == 1


def test_s3_on_a_bucket_that_does_not_exist_fails_naming_it_and_keeps_the_error(make: Make, s3_url: str) -> None:
    bucket = f"sensor-{uuid.uuid4().hex[:8]}"
    project, sensors, backends = make(
        f"  drops:\n    type: s3\n    url: 's3://{bucket}/orders?endpoint={s3_url}'\n    min_interval: 0s\n"
        "  landing: {type: files, path: 'in/*', min_interval: 0s}\n"
    )
    (project.root / "in").mkdir()
    (project.root / "in" / "a").write_text("a")
    with logged("sluice.sensors", logging.ERROR) as records:
        assert [r.name for r in sensors.poll(T0)] == ["landing"]  # the other sensor fires
        assert sensors.poll(T0 + timedelta(seconds=1)) == []
    error = f"s3 sensor drops: bucket '{bucket}' does not exist at 127.0.0.1:{urlsplit(s3_url).port}; "
    assert sensors.errors["drops"].startswith(error) and sensors.errors["drops"].endswith(f"(s3://{bucket}/orders)")
    assert [r.getMessage() for r in records] == [f"sensor drops: {sensors.errors['drops']}"]  # once, not per look
    assert "secret" not in sensors.errors["drops"]
    listing = Sensors(project, backends.state, backends.bus)  # another process: sluice sensors reads the state store
    [row] = [r for r in listing.cursors() if r["name"] == "drops"]
    assert row["error"] == sensors.errors["drops"] and row["cursor"] == {}
    s3_filesystem(s3_url).create_dir(bucket)  # the bucket made: the next look is good and clears the error
    assert sensors.poll(T0 + timedelta(seconds=2)) == [] and sensors.errors == {}
    [row] = [r for r in listing.cursors() if r["name"] == "drops"]
    assert row["error"] is None


def test_table_fires_on_change_events_of_the_synced_table(make: Make) -> None:
    connections = "connections:\n  src: postgresql://u@127.0.0.1:1/a\n  dst: postgresql://u@127.0.0.1:1/b\n"
    syncs = "syncs:\n  - {name: shop, source: src, target: dst, tables: [public.orders]}\n"
    _, sensors, backends = make(
        "  orders_changed: {type: table, sync: shop, table: public.orders, min_interval: 0}\n", connections + syncs
    )
    assert sensors.poll(T0) == []
    source = cdc.Source("postgresql", "src", [1], "0/1", 0)
    change = cdc.ChangeEvent("c", "public.orders", [1], source, after={"id": 1})
    topic = cdc.change_topic("shop", "src", "public.orders")
    backends.bus.publish(topic, [(cdc.key_text([1]), cdc.encode(change))])
    assert [r.name for r in sensors.poll(T0 + timedelta(seconds=1))] == ["orders_changed"]
    assert sensors.poll(T0 + timedelta(seconds=2)) == []
    backends.bus.publish(topic, [(cdc.key_text([2]), cdc.encode(change))])
    assert len(sensors.poll(T0 + timedelta(seconds=3))) == 1


@pytest.mark.kafka
def test_table_watches_every_partition_of_a_change_topic_on_kafka(make: Make, kafka_url: str) -> None:
    namespace = f"sensor-{uuid.uuid4().hex[:10]}"
    connections = "connections:\n  src: postgresql://u@127.0.0.1:1/a\n  dst: postgresql://u@127.0.0.1:1/b\n"
    syncs = "syncs:\n  - {name: shop, source: src, target: dst, tables: [public.orders]}\n"
    bus = f"bus: '{kafka_url}?namespace={namespace}'\n"
    _, sensors, backends = make(
        "  orders_changed: {type: table, sync: shop, table: public.orders, min_interval: 0}\n", bus + connections + syncs
    )
    topic = cdc.change_topic("shop", "src", "public.orders")
    try:
        assert sensors.poll(T0) == []  # no topic yet
        assert backends.bus.create_topic(topic, 3) == 3  # a sync with partitions: 3
        source = cdc.Source("postgresql", "src", [1], "0/1", 0)
        change = cdc.encode(cdc.ChangeEvent("c", "public.orders", [1], source, after={"id": 1}))
        backends.bus.publish_partitions([(topic, 2, [(cdc.key_text([1]), change)])])
        assert [r.name for r in sensors.poll(T0 + timedelta(seconds=1))] == ["orders_changed"]
        assert sensors.poll(T0 + timedelta(seconds=2)) == []
        backends.bus.publish_partitions([(topic, 1, [(cdc.key_text([2]), change)])])
        assert len(sensors.poll(T0 + timedelta(seconds=3))) == 1
        cursor = backends.state.sensor_cursor("p", "orders_changed")
        assert cursor is not None and cursor.value == {"offsets": {"0": 0, "1": 1, "2": 1}}
    finally:
        admin = backends.bus.admin  # type: ignore[attr-defined]
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{namespace}.")]
        for future in admin.delete_topics(names, operation_timeout=10).values() if names else ():
            future.result(timeout=10)


@pytest.mark.postgres
def test_run_fires_when_the_other_project_has_a_new_succeeded_run(make: Make, pg_db_url: str) -> None:
    other = PostgresStateStore(pg_db_url)
    try:
        _, sensors, _ = make(f"  upstream: {{type: run, state: '{pg_db_url}', project: ingest, min_interval: 0}}\n")
        assert sensors.poll(T0) == []
        other.create_run(RunRecord("r1", "ingest", "failed", 1.0, 2.0), [])
        other.create_run(RunRecord("x1", "elsewhere", "succeeded", 1.0, 2.0), [])
        assert sensors.poll(T0 + timedelta(seconds=1)) == []
        other.create_run(RunRecord("r2", "ingest", "succeeded", 3.0, 4.0), [])
        assert [r.name for r in sensors.poll(T0 + timedelta(seconds=2))] == ["upstream"]
        assert sensors.poll(T0 + timedelta(seconds=3)) == []
        other.create_run(RunRecord("r3", "ingest", "running", 5.0), [])
        assert sensors.poll(T0 + timedelta(seconds=4)) == []
        other.finish_run("r3", "succeeded", 6.0)
        assert len(sensors.poll(T0 + timedelta(seconds=5))) == 1
    finally:
        other.close()


def test_hosted_by_the_scheduler_the_cursor_is_saved_with_the_tick(make: Make) -> None:
    project, _, backends = make("  landing: {type: files, path: 'in/*', targets: [orders], min_interval: 1m}\n")
    (project.root / "in").mkdir()
    (project.root / "in" / "a").write_text("a")
    state = backends.state
    [sensors] = hosted_sensors(project, state, backends.bus)
    clock = FakeClock(T0)
    starter = RecordingStarter(project, state)
    scheduler = Scheduler(project, state, starter, clock=clock, sources=[sensors])
    [fired] = scheduler.step().fired
    assert (fired.schedule, fired.logical_date) == ("landing", f"landing@{T0.isoformat()}")
    assert [(r.name, r.trigger, r.targets) for r in starter.requests] == [("landing", "sensor", (2001,))]
    cursor = state.sensor_cursor("p", "landing")  # saved in the tick's transaction
    assert cursor is not None and cursor.last_key == fired.logical_date and cursor.fired_at == T0.timestamp()
    clock.advance(90)
    assert scheduler.step().fired == []


class _Killed(BaseException):  # not an Exception: a launch failing is set apart, a dying process is not
    """The scheduler's process dies here."""


class _DyingStarter(RecordingStarter):
    def start(self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]:
        raise _Killed


def test_a_request_recorded_before_the_scheduler_died_starts_once_after_a_restart(make: Make) -> None:
    project, _, backends = make("  landing: {type: files, path: 'in/*', targets: [orders], min_interval: 0}\n")
    (project.root / "in").mkdir()
    (project.root / "in" / "a").write_text("a")
    state = backends.state
    clock = FakeClock(T0)
    first = Scheduler(
        project,
        state,
        _DyingStarter(project, state),
        clock=clock,
        holder="a",
        lease_s=30,
        sources=hosted_sensors(project, state, backends.bus),
    )
    with pytest.raises(_Killed):  # the request's tick is recorded, its run is not
        first.step()
    [tick] = state.ticks("p", "landing")
    assert tick.run_id is not None and tick.run_status is None
    clock.advance(60)  # the dead scheduler's lease has expired
    starter = RecordingStarter(project, state)
    second = Scheduler(project, state, starter, clock=clock, holder="b", sources=hosted_sensors(project, state, backends.bus))
    assert [t.run_id for t in second.step().fired] == [tick.run_id]
    clock.advance(60)
    assert second.step().fired == []
    third = Scheduler(project, state, starter, clock=clock, holder="b", sources=hosted_sensors(project, state, backends.bus))
    assert third.step().fired == []  # another restart starts nothing again
    assert starter.run_ids == [tick.run_id]
    assert [(r.name, r.trigger, r.targets, r.logical_date) for r in starter.requests] == [("landing", "sensor", (2001,), T0)]
    assert [t.logical_date for t in state.ticks("p", "landing")] == [tick.logical_date]


def test_a_request_the_host_never_took_fires_again(make: Make) -> None:
    project, _, backends = make("  landing: {type: files, path: 'in/*', min_interval: 0}\n")
    (project.root / "in").mkdir()
    (project.root / "in" / "a").write_text("a")
    [sensors] = hosted_sensors(project, backends.state, backends.bus)  # nobody records: the step failed after poll
    assert len(sensors.poll(T0)) == 1
    assert len(sensors.poll(T0 + timedelta(seconds=1))) == 1
    standalone = Sensors(project, backends.state, backends.bus)  # the cursor itself records the request
    assert len(standalone.poll(T0 + timedelta(seconds=2))) == 1
    assert standalone.poll(T0 + timedelta(seconds=3)) == []


def test_every_sensor_problem_is_reported_at_once_each_at_its_line(tmp_path: Path) -> None:
    text = (
        f"name: p\n{OBJECTS}sensors:\n"
        "  a: {type: s3, path: x}\n"
        "  b: {type: table, sync: nope, table: t}\n"
        "  c: {type: files, path: '*', targets: [nobody]}\n"
        "  d: {type: files, path: '*', min_interval: soon}\n"
        "  e:\n"
        "    type: s3\n"
        "    path: x\n"
        "    sync: nope\n"
        "    min_interval: soon\n"
        "    timezone: Paris\n"
        "    targets: [nobody]\n"
        "    colour: red\n"
        "  f: {type: flies, path: 'in/*', tags: [x], targets: [1001]}\n"
    )
    with pytest.raises(ValidationFailed) as failure:
        load_project(write_yaml(tmp_path / "p", text))
    lines = [
        line.strip(" -").replace(str(tmp_path / "p") + "/", "") for line in str(failure.value).splitlines() if "sensor" in line
    ]
    expected = (
        "sluice.yaml:7: sensor 'a': type s3 needs url",
        "sluice.yaml:7: sensor 'a': type s3 takes no path",
        "sluice.yaml:8: sensor 'b': no sync named 'nope'",
        "sluice.yaml:9: sensor 'c': target 'nobody' is not an object id or name",
        "sluice.yaml:10: sensor 'd': min_interval: 'soon' is not a duration",
        # a wrong key hides none of the others, nor one problem across keys the others
        "sluice.yaml:12: sensor 'e': type s3 needs url",
        "sluice.yaml:13: sensor 'e': type s3 takes no path, sync",
        "sluice.yaml:14: sensor 'e': no sync named 'nope'",
        "sluice.yaml:15: sensor 'e': min_interval: 'soon' is not a duration",
        "sluice.yaml:16: sensor 'e': unknown time zone 'Paris'",
        "sluice.yaml:17: sensor 'e': target 'nobody' is not an object id or name",
        "sluice.yaml:18: sensor 'e': unknown key 'colour'",
        "sluice.yaml:19: sensor 'f': type: invalid enum value 'flies'",
        "sluice.yaml:19: sensor 'f': give targets or tags, not both",
        "sluice.yaml:19: sensor 'f': no object carries any of the tags ['x']",
    )
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_a_bad_min_interval_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = f"name: p\n{OBJECTS}sensors:\n  landing:\n    type: files\n    path: 'in/*'\n    min_interval: 5 parsecs\n"
    with pytest.raises(ValidationFailed) as failure:
        load_project(write_yaml(tmp_path / "p", text))
    assert "sluice.yaml:10: sensor 'landing': min_interval: '5 parsecs' is not a duration" in str(failure.value)


def test_a_sensors_runs_count_days_in_its_time_zone(make: Make, tmp_path: Path) -> None:
    from sluice.scheduling.templating import run_context

    project, sensors, _ = make("  landing: {type: files, path: 'in/*.csv', timezone: Europe/Paris}\n")
    (project.root / "in").mkdir()
    (project.root / "in" / "a.csv").write_text("x\n")
    late = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 on the 29th in Paris
    [request] = sensors.poll(late)
    options = request.options().as_dict()
    assert options["timezone"] == "Europe/Paris"
    assert run_context(project, options)["ds"] == "2026-03-29"
    bad = f"name: p\n{OBJECTS}sensors:\n  landing: {{type: files, path: '*', timezone: Paris}}\n"
    with pytest.raises(ValidationFailed) as failure:
        load_project(write_yaml(tmp_path / "bad", bad))
    assert "sluice.yaml:7: sensor 'landing'" in str(failure.value) and "unknown time zone 'Paris'" in str(failure.value)
