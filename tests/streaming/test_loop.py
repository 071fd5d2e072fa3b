"""Streaming objects against the real broker: micro-batches into the lake with their offsets, restarts, SQL per
batch, windows, dead letters, downstream batch objects, the local and the S3 lake."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pytest

from helpers import logged, read_topic
from sluice.errors import TerminalError, TransientError, ValidationFailed
from sluice.lake.base import Lake
from sluice.lake.registry import open_lake
from sluice.project.load import load_project
from sluice.runtime.run import RunOptions, run_project
from sluice.streaming import loop
from sluice.streaming.loop import MicroBatcher, run_stream
from sluice.streaming.status import StreamStatus
from sluice.urls import kafka_servers
from streaming.streams import MakeTopic, produce, write_project


def drained(count: int):  # type: ignore[no-untyped-def]
    """``until``: once ``count`` records were committed and no partition lags."""
    return lambda s: s.records >= count and bool(s.lag) and s.lag_total == 0


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake_option(request: pytest.FixtureRequest) -> Iterator[object]:
    if request.param == "local":
        yield None
        return
    s3_url = request.getfixturevalue("s3_url")
    bucket = f"sluice-test-{uuid.uuid4().hex[:10]}"
    yield {"type": "s3", "url": f"s3://{bucket}/lake", "connection": "lake_s3", "_s3": s3_url}
    from lake.contract import _delete_bucket

    _delete_bucket(s3_url, bucket)


def _project_file(tmp_path: Path, kafka_url: str, topic: str, lake_option: object, **kwargs: object) -> Path:
    lake = None
    if isinstance(lake_option, dict):
        lake = {k: v for k, v in lake_option.items() if k != "_s3"}
    path = write_project(tmp_path / "p", kafka_url, topic, lake=lake, **kwargs)  # type: ignore[arg-type]
    if isinstance(lake_option, dict):
        text = path.read_text().replace('"connections": {', f'"connections": {{"lake_s3": "{lake_option["_s3"]}", ', 1)
        path.write_text(text)
    return path


def test_micro_batches_land_in_the_lake_with_their_offsets_and_dead_letters(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, lake_option: object
) -> None:
    topic = topics(3)
    produce(kafka_url, topic, range(3000), malformed=[b"{oops", b"[1, 2]"], partitions=3)
    project = load_project(_project_file(tmp_path, kafka_url, topic, lake_option, source={"columns": ["_partition", "_offset"]}))
    status = run_stream(project, 1001, until=drained(3002))
    assert (status.state, status.records, status.dead_letters) == ("stopped", 3002, 2)
    lake = open_lake(project)
    table = lake.read("raw/events").read_all()
    assert sorted(table.column("id").to_pylist()) == list(range(3000))
    commit = lake.last_commit("raw", "events")
    assert commit is not None and commit["offsets"] == {topic: {"0": 1002, "1": 1000, "2": 1000}}
    assert status.last_batch is not None and commit["batch"] == status.last_batch.batch
    letters = read_topic(kafka_url, f"{topic}.dead-letter")
    assert sorted(m.value() for m in letters) == [b"[1, 2]", b"{oops"]
    headers = dict(letters[0].headers())
    assert (
        headers["sluice.errors.topic"] == topic.encode()
        and headers["sluice.errors.partition"] == b"0"
        and headers["sluice.errors.reason"]
        and headers["sluice.errors.object"] == b"object 1001 (events)"
    )


def test_a_record_count_trigger_shorthand_and_a_time_zone_aware_column(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    """A user's trial: ``trigger: 10s`` / a record count (issue 13's words) failed with "expected object, got str",
    and ``timestamp[ms, tz=UTC]`` was an unknown column type."""
    topic = topics()
    produce(kafka_url, topic, range(300))
    schema = {"id": "int64", "ts": "timestamp[ms, tz=UTC]"}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming={"trigger": 100}, source={"schema": schema}))
    status = run_stream(project, 1001, until=drained(300))
    assert status.last_batch is not None and status.last_batch.rows == 100  # micro-batches cut at 100 records
    table = open_lake(project).read("raw/events").read_all().sort_by("id")
    assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    start = datetime(2026, 11, 30, tzinfo=UTC)
    assert table.column("ts").to_pylist() == [start + timedelta(seconds=i) for i in range(300)]


def test_a_restart_resumes_from_the_lake_offsets_not_the_group(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(1000), partitions=2)
    project = load_project(write_project(tmp_path / "p", kafka_url, topic))
    run_stream(project, 1001, until=drained(1000))
    first = open_lake(project).last_commit("raw", "events")
    assert first is not None
    produce(kafka_url, topic, range(1000, 1500), partitions=2)
    shown: list[str] = []

    def until(s: StreamStatus) -> bool:  # asked first right after the start, before the first new micro-batch
        if not shown:
            shown.append(s.progress_line())
        return drained(500)(s)

    again = run_stream(project, 1001, until=until)
    assert f", batch {first['batch']} ({first['rows']:,} rows) at " in shown[0]  # the lake's, not "no batch yet"
    assert again.records == 500
    ids = open_lake(project).read("raw/events").read_all().column("id").to_pylist()
    assert sorted(ids) == list(range(1500))


def test_sql_runs_on_each_micro_batch(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics()
    produce(kafka_url, topic, range(200))
    streaming = {
        "trigger": {"records": 50, "interval": "5s"},
        "sql": "SELECT id, amount * 4 AS cents FROM batch WHERE id % 2 = 0",
    }
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming=streaming))
    status = run_stream(project, 1001, until=drained(200))
    table = open_lake(project).read("raw/events").read_all().sort_by("id")
    assert table.column_names == ["id", "cents"] and table.column("id").to_pylist() == list(range(0, 200, 2))
    assert status.last_batch is not None and status.last_batch.batch >= 4  # cut every 50 records


def test_windows_close_with_the_watermark_and_continue_after_a_restart(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics()
    window = {"type": "tumbling", "size": "1m", "time_column": "ts", "watermark": "0s", "aggregates": {"n": "count(*)"}}
    project = load_project(
        write_project(tmp_path / "p", kafka_url, topic, streaming={"trigger": {"interval": "200ms"}, "window": window})
    )
    produce(kafka_url, topic, range(150))  # event times 00:00:00 .. 00:02:29, one a second
    run_stream(project, 1001, until=drained(150))
    produce(kafka_url, topic, range(150, 200))  # up to 00:03:19: closes [00:02, 00:03)
    produce(kafka_url, topic, [10])  # late: its window [00:00, 00:01) was emitted
    status = run_stream(project, 1001, until=drained(51))
    rows = open_lake(project).read("raw/events").read_all().sort_by("window_start").to_pylist()
    assert [r["n"] for r in rows] == [60, 60, 60]  # one row per closed window, none twice across the restart
    assert status.late_records == 1


def produce_events(kafka_url: str, topic: str, events: dict[int, list[tuple[int, int]]]) -> None:
    """Write ``{partition: [(event second, amount)...]}`` to ``topic``, each partition's records in the order given."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_servers(kafka_url), "linger.ms": 20})
    for partition, records in events.items():
        for second, amount in records:
            ts = (WINDOW_EPOCH + dt.timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
            producer.produce(topic, json.dumps({"ts": ts, "amount": amount}).encode(), partition=partition)
    assert producer.flush(60) == 0


WINDOW_EPOCH = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SKEWED_WINDOW = {
    "type": "tumbling",
    "size": "10s",
    "time_column": "ts",
    "watermark": "5s",
    "aggregates": {"n": "count(*)", "total": "sum(amount)::BIGINT"},
    "late": "side_output",
}


def skewed_events() -> dict[int, list[tuple[int, int]]]:
    """Partition 0: 4,000 records one a second (over 4,000 s of event time); partition 1: 4,000 records ten a
    second (400 s): consumed at about the same rate, partition 0's event time runs ten times ahead."""
    return {0: [(i, i % 7) for i in range(4000)], 1: [(i // 10, 100 + i % 5) for i in range(4000)]}


def recount(events: dict[int, list[tuple[int, int]]], watermark_s: int) -> list[tuple[dt.datetime, int, int]]:
    """Every window of 10 s ending at or before ``watermark_s``: (start, n, total), counted in Python."""
    windows: dict[int, list[int]] = {}
    for records in events.values():
        for second, amount in records:
            windows.setdefault(second // 10 * 10, []).append(amount)
    return [
        (WINDOW_EPOCH + dt.timedelta(seconds=start), len(amounts), sum(amounts))
        for start, amounts in sorted(windows.items())
        if start + 10 <= watermark_s
    ]


def window_rows(project: Any) -> list[tuple[dt.datetime, int, int]]:
    rows = open_lake(project).read("raw/events").read_all().sort_by("window_start").to_pylist()
    return [(r["window_start"], r["n"], r["total"]) for r in rows]


def drain(project: Any, until: Callable[[StreamStatus], bool] | None = None) -> StreamStatus:
    """Run object 1001 like ``sluice stream --available-now`` (or until ``until``)."""
    batcher = MicroBatcher(project, project.objects[1001], open_lake(project))
    batcher.available_now = until is None
    return batcher.run(until)


@pytest.mark.parametrize("sql", [None, "SELECT * FROM batch WHERE amount >= 0"])
def test_partitions_at_different_event_times_count_no_record_late(
    sql: str | None, tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    """The trial's wrong data: draining a backlog, one micro-batch reached far into partition 0's event time and the
    watermark (the largest event time of all) made most of partition 1's records late. With the watermark the
    smallest of the partitions', every window equals a recount and nothing is late (through a ``sql`` too)."""
    topic = topics(2)
    events = skewed_events()
    produce_events(kafka_url, topic, events)
    streaming: dict[str, Any] = {"trigger": {"records": 500, "interval": "10s"}, "window": SKEWED_WINDOW}
    if sql is not None:
        streaming["sql"] = sql
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming=streaming))
    with logged("sluice.streaming.loop", logging.WARNING) as records:
        status = drain(project)
    assert not [r for r in records if "_sluice_partition" in r.getMessage()]
    assert status.late_records == 0 and status.records == 8000
    # at the end both partitions are read to their end: the watermark is 3,999 s - 5 s
    assert window_rows(project) == recount(events, 3994)
    assert not open_lake(project).exists("raw/events_late")


def test_a_sql_dropping_the_partition_column_is_said_once(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics(2)
    produce_events(kafka_url, topic, {0: [(1, 1), (2, 2)], 1: [(3, 3)]})
    streaming = {"trigger": {"records": 1, "interval": "10s"}, "window": SKEWED_WINDOW, "sql": "SELECT ts, amount FROM batch"}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming=streaming))
    with logged("sluice.streaming.loop", logging.WARNING) as records:
        assert drain(project).records == 3
    said = [r.getMessage() for r in records if "_sluice_partition" in r.getMessage()]
    assert len(said) == 1 and "largest event time of all partitions" in said[0] and "keep it (SELECT *" in said[0]


def test_windows_across_a_restart_and_a_truly_late_record(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    """Stopped after some micro-batches and started again, the windows are those of one run (each partition's event
    time kept in the committed state); a record older than what its own partition allowed is still late."""
    topic = topics(2)
    events = skewed_events()
    produce_events(kafka_url, topic, events)
    streaming = {"trigger": {"records": 500, "interval": "10s"}, "window": SKEWED_WINDOW}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming=streaming))
    first = drain(project, until=lambda s: s.records >= 3000)
    assert 3000 <= first.records < 8000 and first.late_records == 0
    assert drain(project).late_records == 0
    assert window_rows(project) == recount(events, 3994)
    late = {1: [(3, 1000)]}  # 3 s: [0 s, 10 s) was emitted long ago
    produce_events(kafka_url, topic, late)
    third = drain(project)
    assert third.late_records == 1 and window_rows(project) == recount(events, 3994)
    assert open_lake(project).read("raw/events_late").read_all().column("amount").to_pylist() == [1000]


def test_a_window_time_column_that_never_holds_a_time_stops_the_object(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    """A new user's trial: ``time_column: currency`` dead-lettered every record and exited 0 without a word."""
    topic = topics()
    window = {"type": "tumbling", "size": "1m", "time_column": "user", "aggregates": {"n": "count(*)"}}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming={"window": window}))
    produce(kafka_url, topic, range(20))
    with pytest.raises(TerminalError, match=r"window time_column 'user' holds no readable time .*name a timestamp"):
        run_stream(project, 1001, until=drained(20))


def test_a_declared_type_that_fits_no_record_stops_the_object_and_commits_nothing(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    """A user's trial: ``schema: {id: string}`` over integer ids dead-lettered every record, reported running and
    exited 0, its offsets past them. Now it stops at the first micro-batch, and once the schema is fixed nothing was
    lost: every record is in the lake and none was dead-lettered."""
    topic = topics()
    produce(kafka_url, topic, range(50), malformed=[b"{oops"])
    wrong = {"schema": {"id": "string", "amount": "float64"}}
    batches = {"trigger": {"interval": "10s", "records": 51}}  # one micro-batch of all 51
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, source=wrong, streaming=batches))
    message = r"object 1001 \(events\): none of the 51 records of a micro-batch fits the declared schema: column 'id' is "
    with pytest.raises(TerminalError, match=message + r"declared string but the record has 0 \(an integer\); declare a"):
        run_stream(project, 1001, until=drained(51))
    lake = open_lake(project)
    assert lake.last_commit("raw", "events") is None  # nothing committed: the offsets did not move past the records
    right = {"schema": {"id": "int64", "amount": "float64"}}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, source=right, streaming=batches))
    status = run_stream(project, 1001, until=drained(51))
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == list(range(50))
    assert status.dead_letters == 1  # the malformed record only
    letters = read_topic(kafka_url, f"{topic}.dead-letter")
    assert [m.value() for m in letters] == [b"{oops"]


def test_downstream_batch_objects_read_what_was_committed(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics()
    child = {"id": 2001, "name": "per_user", "parents": [1001], "sql": "SELECT count(*) AS n FROM events"}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, extra_objects=[child]))
    with pytest.raises(Exception, match=r"has committed no micro-batch yet.*sluice stream"):
        run_project(project, RunOptions())
    produce(kafka_url, topic, range(300))
    run_stream(project, 1001, until=drained(300))
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert summary.objects[1001].status == "skipped"
    assert open_lake(project).read("cleaned/per_user.parquet").read_all().to_pylist() == [{"n": 300}]
    produce(kafka_url, topic, range(300, 310))
    run_stream(project, 1001, until=drained(10))
    run_project(project, RunOptions())
    assert open_lake(project).read("cleaned/per_user.parquet").read_all().to_pylist() == [{"n": 310}]


@pytest.mark.parametrize(
    ("streaming", "message"),
    [
        ({"trigger": {}}, r"streaming: trigger: give interval \(a duration\), records \(a count\) or both"),
        ({"trigger": {"interval": "soon"}}, r"'soon' is not a duration"),
        ({"max_batch_records": 0}, r"max_batch_records"),
        ({"sql": "SELECT * FROM batch WHERE"}, r"streaming: sql: SQL syntax error"),
        (
            {"sql": "SELECT * FROM orders"},
            r"streaming: sql reads 'orders'; it runs on each micro-batch, which it reads as the table 'batch'",
        ),
    ],
)
def test_streaming_settings_are_checked_with_their_line(tmp_path: Path, streaming: dict[str, object], message: str) -> None:
    path = write_project(tmp_path / "p", "kafka://127.0.0.1:1", "t", streaming=streaming)
    with pytest.raises(ValidationFailed, match=message):
        load_project(path)


def test_options_the_spark_engine_does_not_run_are_refused(tmp_path: Path) -> None:
    """A new user's trial: engine: spark ignored window: and wrote raw rows where windows were asked for."""
    window = {"type": "tumbling", "size": "1m", "time_column": "ts", "aggregates": {"n": "count(*)"}}
    path = write_project(
        tmp_path / "p",
        "kafka://127.0.0.1:1",
        "t",
        streaming={"trigger": {"interval": "1s"}, "window": window, "max_batch_bytes": 2048},
        source={"schema": {"ts": "string"}, "group": "g"},
    )
    path.write_text(path.read_text().replace('"name": "events",', '"name": "events", "engine": "spark",', 1))
    with pytest.raises(ValidationFailed) as caught:
        load_project(path)
    refused = [p.message for p in caught.value.problems]
    for key in ("streaming: window", "streaming: max_batch_bytes", "source: group"):
        assert any(f"{key} is not supported on engine: spark" in m for m in refused), refused


def test_a_streaming_object_reads_kafka_and_takes_no_batch_work(tmp_path: Path) -> None:
    path = write_project(tmp_path / "p", "kafka://127.0.0.1:1", "t", extra_objects=[])
    text = path.read_text().replace('"streaming"', '"sql": "select 1", "streaming"', 1)
    path.write_text(text)
    with pytest.raises(ValidationFailed, match=r"a streaming object takes no 'sql' \(write it under streaming: sql"):
        load_project(path)


def test_status_snapshot_reports_rates_lag_and_the_last_batch() -> None:
    from sluice.streaming.status import BatchInfo

    status = StreamStatus(7, "events")
    status.committed(BatchInfo(1, 1000.0, 10, 12, 1200, 0.5), dead_letters=2, late=1)
    status.set_lag({("t", 0): 5, ("t", 1): 0})
    snap = status.snapshot()
    assert snap["records"] == 12 and snap["dead_letters"] == 2 and snap["late_records"] == 1
    assert snap["lag"] == [{"topic": "t", "partition": 0, "records": 5}, {"topic": "t", "partition": 1, "records": 0}]
    assert snap["last_batch"]["batch"] == 1 and snap["last_batch"]["rows"] == 10


def test_the_rate_is_that_of_recent_batches_zero_when_idle_and_none_once_stopped() -> None:
    from sluice.streaming.status import BatchInfo

    status = StreamStatus(7, "events")
    assert status.progress_line().endswith(", last batch not known yet")  # before the lake's last commit is read
    status.resumed({"batch": 78, "at": 1000.0, "rows": 40, "records": 41})
    assert status.last_batch is not None and status.last_batch.batch == 78 and status.rates() == (0.0, 0.0)
    status.set_state("running")
    now = time.time()
    status.committed(BatchInfo(79, now, 1000, 1000, 100_000, 1.0), dead_letters=0, late=0)
    assert status.rates(now)[0] == pytest.approx(1000.0)
    assert status.progress_line().startswith("events: running, ") and " 0 records/s" not in status.progress_line()
    status.set_idle()  # the loop found nothing more to read
    assert status.rates(now) == (0.0, 0.0) and " 0 records/s" in status.progress_line()
    status.committed(BatchInfo(80, now + 1, 500, 500, 50_000, 1.0), dead_letters=0, late=0)
    assert status.rates(now + 1)[0] > 0
    status.set_state("stopped")
    assert status.rates() == (0.0, 0.0) and "records/s" not in status.progress_line()
    assert status.progress_line().startswith("events: stopped, lag 0, batch 80 (500 rows) at ")
    fresh = StreamStatus(8, "other")
    fresh.resumed(None)
    assert fresh.progress_line().endswith(", no batch committed yet")


def test_one_streaming_object_reads_several_topics(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    first, second = topics(), topics(2)
    produce(kafka_url, first, range(300))
    produce(kafka_url, second, range(300, 500), partitions=2)
    source = {"topics": [second], "columns": ["_topic"]}
    project = load_project(write_project(tmp_path / "p", kafka_url, first, source=source))
    run_stream(project, 1001, until=drained(500))
    lake = open_lake(project)
    table = lake.read("raw/events").read_all()
    by_topic = {
        t: sorted(i for i, tt in zip(table["id"].to_pylist(), table["_topic"].to_pylist(), strict=True) if tt == t)
        for t in (first, second)
    }
    assert by_topic == {first: list(range(300)), second: list(range(300, 500))}
    commit = lake.last_commit("raw", "events")
    assert commit is not None and set(commit["offsets"]) == {first, second}


def test_a_batch_kafka_source_reads_one_topic(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "name: t\nconnections: {events: kafka://127.0.0.1:9}\nobjects:\n"
        "  - {id: 1001, name: a, source: {type: kafka, connection: events, topic: x, topics: [y]}}\n"
    )
    with pytest.raises(ValidationFailed, match=r"sluice.yaml:4: object 1001 \(a\): a batch kafka source reads one topic"):
        load_project(path)


def test_streaming_compact_rewrites_small_batches_as_the_stream_goes(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, lake_option: object
) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(1200), partitions=2)
    streaming = {"trigger": {"records": 50}, "max_batch_records": 50, "compact": {"min_files": 4, "target_bytes": 1 << 20}}
    project = load_project(_project_file(tmp_path, kafka_url, topic, lake_option, streaming=streaming))
    status = run_stream(project, 1001, until=drained(1200))
    lake = open_lake(project)
    commit = lake.last_commit("raw", "events")
    assert commit is not None and commit["batch"] == status.last_batch.batch >= 24  # type: ignore[union-attr]
    assert len(lake.parquet_files("raw/events")) <= 4  # 24 micro-batches, compacted every 4th
    ids = lake.read("raw/events").read_all().column("id").to_pylist()
    assert sorted(ids) == list(range(1200))  # every record once
    assert commit["offsets"] == {topic: {"0": 600, "1": 600}}


class FlakyLake:
    """The project's lake behind a network that fails on cue: ``reads`` / ``appends`` next calls of ``last_commit`` /
    ``append`` raise the S3 lake's TransientError (nothing reaches the lake), ``lost`` next appends reach the lake but
    their answer is lost (the same error). ``then(n)``: called before the ``n``-th append (1-based)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = self.appends = self.lost = 0
        self.calls = 0
        self.states: list[str] = []
        self.status: StreamStatus | None = None
        self.then: Callable[[int], None] = lambda n: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _down(self) -> TransientError:
        return TransientError("lake (s3): s3://lake/raw/events: Connection refused")

    def last_commit(self, layer: str, name: str) -> Any:
        if self.reads:
            self.reads -= 1
            raise self._down()
        return self.inner.last_commit(layer, name)

    def append(self, layer: str, name: str, data: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.then(self.calls)
        assert self.status is not None
        self.states.append(self.status.state)
        if self.appends:
            self.appends -= 1
            raise self._down()
        done = self.inner.append(layer, name, data, **kwargs)
        if self.lost:
            self.lost -= 1
            raise self._down()
        return done


def test_an_unreachable_lake_is_waited_for_with_backoff_keeping_the_position(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "BACKOFF_FIRST_S", 0.001, raising=False)
    monkeypatch.setattr(loop, "BACKOFF_CAP_S", 0.004, raising=False)
    topic = topics()
    produce(kafka_url, topic, range(300))
    streaming = {"trigger": {"records": 100, "interval": "5s"}}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming=streaming))
    lake = FlakyLake(open_lake(project))
    lake.reads = 3  # down at the start: the last commit cannot be read

    def outage(call: int) -> None:
        if call == 2:  # the second micro-batch reaches the lake but its answer is lost, then 12 attempts fail
            lake.lost, lake.appends = 1, 12

    lake.then = outage
    status = StreamStatus(1001, "events")
    lake.status = status
    with logged("sluice.streaming.loop", logging.INFO) as records:
        final = run_stream(project, 1001, until=drained(300), lake=cast(Lake, lake), status=status)
    assert (final.state, final.error, final.records) == ("stopped", None, 300)
    table = open_lake(project).read("raw/events").read_all()
    assert sorted(table.column("id").to_pylist()) == list(range(300))  # nothing lost, nothing twice
    commit = open_lake(project).last_commit("raw", "events")
    assert commit is not None and commit["offsets"] == {topic: {"0": 300}} and commit["batch"] == 3
    assert lake.states[2:15] == ["lake_unreachable"] * 13 and lake.states[-1] == "running"
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # once per outage, not once per attempt
    assert (
        "cannot read its last commit: the lake is unreachable (lake (s3): s3://lake/raw/events: Connection refused)" in errors[0]
    )
    assert "cannot commit micro-batch 2 to events: the lake is unreachable" in errors[1]
    assert len([r for r in records if "answers again" in r.getMessage()]) == 2


def test_a_stop_during_a_lake_outage_ends_the_loop_without_committing(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "BACKOFF_FIRST_S", 0.001, raising=False)
    monkeypatch.setattr(loop, "BACKOFF_CAP_S", 0.004, raising=False)
    topic = topics()
    produce(kafka_url, topic, range(100))
    project = load_project(write_project(tmp_path / "p", kafka_url, topic))
    lake = FlakyLake(open_lake(project))
    lake.appends = 1_000_000
    obj = project.objects[1001]
    batcher = MicroBatcher(project, obj, cast(Lake, lake))
    lake.status = batcher.status
    lake.then = lambda call: batcher.stop() if call == 5 else None
    final = batcher.run()
    assert final.state == "stopped" and final.error is not None
    assert "stopped while the lake was unreachable" in final.error and "consumed again at the next start" in final.error
    assert open_lake(project).last_commit("raw", "events") is None
    again = run_stream(project, 1001, until=drained(100))  # the lake back: the same records, once
    assert sorted(open_lake(project).read("raw/events").read_all().column("id").to_pylist()) == list(range(100))
    assert again.records == 100


class OwnS3:
    """A versitygw of the test's own (the shared one of ``scripts/servers/s3.sh`` is never stopped): ``stop()`` kills
    it, ``start()`` serves the same folder on the same port again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://sluice-test:sluice-test-secret@127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = os.environ.get("SLUICE_VERSITYGW") or str(Path.home() / ".cache/sluice/gobin/versitygw")
        env = {**os.environ, "ROOT_ACCESS_KEY": "sluice-test", "ROOT_SECRET_KEY": "sluice-test-secret"}
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        (self.folder / "iam").mkdir(parents=True, exist_ok=True)
        command = [binary, "--quiet", "--port", f"127.0.0.1:{self.port}", "--iam-dir", str(self.folder / "iam")]
        self.process = subprocess.Popen([*command, "posix", str(self.folder / "data")], env=env, stdout=subprocess.DEVNULL)
        for _ in range(300):
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.connect(("127.0.0.1", self.port))
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"versitygw did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def own_s3(tmp_path: Path, s3_url: str) -> Iterator[OwnS3]:  # s3_url: versitygw is built
    server = OwnS3(tmp_path / "s3")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's backoff from 0.05 s up to 0.2 s: an outage a test ends is noticed at once."""
    monkeypatch.setattr(loop, "BACKOFF_FIRST_S", 0.05, raising=False)
    monkeypatch.setattr(loop, "BACKOFF_CAP_S", 0.2, raising=False)


@pytest.mark.s3
@pytest.mark.usefixtures("quick_backoff")
def test_a_stopped_s3_server_is_waited_for_and_the_stream_goes_on_once_it_is_back(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, own_s3: OwnS3
) -> None:
    topic = topics()
    produce(kafka_url, topic, range(100))
    lake_option = {"type": "s3", "url": "s3://streams/lake", "connection": "lake_s3", "_s3": own_s3.url}
    streaming = {"trigger": {"records": 100, "interval": "5s"}}
    project = load_project(_project_file(tmp_path, kafka_url, topic, lake_option, streaming=streaming))
    status = StreamStatus(1001, "events")
    seen: list[str | None] = []

    def until(s: StreamStatus) -> bool:
        if s.records >= 100 and own_s3.process is not None and not seen:
            own_s3.stop()  # the first micro-batch is committed: the lake goes away, records keep coming
            produce(kafka_url, topic, range(100, 300))
            seen.append(None)
        return s.records >= 300 and s.lag_total == 0

    def bring_back() -> None:
        for _ in range(1200):
            if status.state == "lake_unreachable":
                seen.append(status.error)
                own_s3.start()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=bring_back, daemon=True)
    watcher.start()
    final = run_stream(project, 1001, until=until, status=status)
    watcher.join()
    assert (final.state, final.error, final.records) == ("stopped", None, 300)
    assert len(seen) == 2 and seen[1] is not None and seen[1].startswith("lake unreachable since ")
    lake = open_lake(project)
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == list(range(300))
    commit = lake.last_commit("raw", "events")
    assert commit is not None and commit["offsets"] == {topic: {"0": 300}}


def test_the_progress_line_says_an_error_once_not_at_every_line() -> None:
    status = StreamStatus(7, "events")
    status.set_state("lake_unreachable", "lake unreachable since 06:12:29: lake (s3): s3://b/raw: Connection refused")
    assert status.progress_line() == (
        "events: lake unreachable since 06:12:29 (lake (s3): s3://b/raw: Connection refused), retrying, position held; "
        "last batch not known yet"
    )
    assert status.progress_line() == "events: lake unreachable since 06:12:29, retrying, position held; last batch not known yet"
    status.set_state("failed", "TerminalError: bad schema")
    assert status.progress_line().startswith("events: failed (TerminalError: bad schema), ")
    assert status.progress_line().startswith("events: failed, ") and "bad schema" not in status.progress_line()
    status.set_state("failed", "TerminalError: another")  # a new error is said again
    assert "(TerminalError: another)" in status.progress_line()


class Forwarder:
    """A TCP forwarder from a free loopback port to the test broker, started when asked: a broker that is not
    there yet when the stream starts (its metadata then names the real broker, which the client reaches itself)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.server: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                self.sockets.append(client)
                upstream = socket.create_connection(self.target)
                self.sockets.append(upstream)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for connection in self.sockets:
            connection.close()


def _late_broker_project(tmp_path: Path, kafka_url: str, topic: str, port: int) -> Any:
    path = write_project(tmp_path / "p", kafka_url, topic)
    host = kafka_url.split("://", 1)[1].split("?")[0].split("/")[0]
    path.write_text(path.read_text().replace(host, f"127.0.0.1:{port}"))
    return load_project(path)


@pytest.mark.usefixtures("quick_backoff")
def test_a_broker_not_there_yet_at_start_is_waited_for_and_streaming_begins_once_it_is(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    """A service started before Kafka (boot order) failed after ~10 s; now it waits, saying so, like mid-stream."""
    topic = topics()
    produce(kafka_url, topic, range(100))
    host, port = kafka_url.split("://", 1)[1].split("?")[0].split("/")[0].rsplit(":", 1)
    broker = Forwarder((host, int(port)))
    project = _late_broker_project(tmp_path, kafka_url, topic, broker.port)
    status = StreamStatus(1001, "events")
    seen: list[str] = []

    def bring_up() -> None:
        for _ in range(1200):
            if status.unreachable is not None:
                seen.append(status.progress_line())
                seen.append(str(status.snapshot()["unreachable"]))
                broker.start()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=bring_up, daemon=True)
    watcher.start()
    try:
        final = run_stream(project, 1001, until=drained(100), status=status)
    finally:
        watcher.join()
        broker.stop()
    assert (final.state, final.error, final.records, final.unreachable) == ("stopped", None, 100, None)
    assert len(seen) == 2 and seen[0].startswith(f"events: starting, Kafka at 127.0.0.1:{broker.port} unreachable since ")
    assert seen[0].endswith(", retrying; no batch committed yet")  # the lake was read: it has none
    assert seen[1].startswith(f"Kafka at 127.0.0.1:{broker.port} unreachable since ")
    assert sorted(open_lake(project).read("raw/events").read_all().column("id").to_pylist()) == list(range(100))


def test_a_stop_while_waiting_for_the_broker_at_start_ends_the_object_at_once(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    topic = topics()
    nowhere = Forwarder(("127.0.0.1", 1))  # never started: nothing listens on its port
    project = _late_broker_project(tmp_path, kafka_url, topic, nowhere.port)
    batcher = MicroBatcher(project, project.objects[1001], open_lake(project))
    done: list[StreamStatus] = []
    thread = threading.Thread(target=lambda: done.append(batcher.run()), daemon=True)
    thread.start()
    for _ in range(600):
        if batcher.status.unreachable is not None:
            break
        time.sleep(0.05)
    assert batcher.status.state == "starting" and batcher.status.unreachable is not None
    batcher.stop()
    thread.join(10)  # the wait is cut within a second or so, not after the 10 s metadata request
    assert not thread.is_alive() and done[0].state == "stopped"
    assert done[0].error is not None and "stopped while Kafka at 127.0.0.1" in done[0].error


def test_sluice_stream_waits_for_a_broker_that_is_not_there_and_sigterm_ends_it_cleanly(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    import signal
    import sys

    nowhere = Forwarder(("127.0.0.1", 1))  # never started
    project = _late_broker_project(tmp_path, kafka_url, topics(), nowhere.port)
    src = str(Path(__file__).resolve().parents[2] / "src")
    child = subprocess.Popen(
        [sys.executable, "-m", "sluice", "stream", str(project.source_file)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert child.stderr is not None
    lines: list[str] = []
    for line in child.stderr:  # a progress line every 2 s; the object fails after ~10 s without the wait
        lines.append(line)
        if "unreachable since" in line and line.startswith("events: "):
            break
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=60)
    text = "".join(lines) + child.stderr.read()
    child.stderr.close()
    assert child.returncode == 0, text
    assert "events: starting, Kafka at 127.0.0.1:" in text and "retrying; no batch committed yet" in text
    assert "events: failed" not in text and "error:" not in text and "scripts/servers" not in text
