"""Streaming objects against the real broker: micro-batches into the lake with their offsets, restarts, SQL per
batch, windows, dead letters, downstream batch objects, the local and the S3 lake."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.errors import TerminalError, ValidationFailed
from sluice.lake.registry import open_lake
from sluice.project.load import load_project
from sluice.runtime.run import RunOptions, run_project
from sluice.streaming.loop import run_stream
from sluice.streaming.status import StreamStatus
from streaming.streams import MakeTopic, produce, read_topic, write_project


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
    letters = read_topic(kafka_url, f"{topic}.dead-letter", 2)
    assert sorted(m.value() for m in letters) == [b"[1, 2]", b"{oops"]
    headers = dict(letters[0].headers())
    assert (
        headers["sluice.errors.topic"] == topic.encode()
        and headers["sluice.errors.partition"] == b"0"
        and headers["sluice.errors.reason"]
        and headers["sluice.errors.object"] == b"object 1001 (events)"
    )


def test_a_restart_resumes_from_the_lake_offsets_not_the_group(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(1000), partitions=2)
    project = load_project(write_project(tmp_path / "p", kafka_url, topic))
    run_stream(project, 1001, until=drained(1000))
    produce(kafka_url, topic, range(1000, 1500), partitions=2)
    again = run_stream(project, 1001, until=drained(500))
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


def test_a_window_time_column_that_never_holds_a_time_stops_the_object(tmp_path: Path, kafka_url: str, topics: MakeTopic) -> None:
    """A new user's trial: ``time_column: currency`` dead-lettered every record and exited 0 without a word."""
    topic = topics()
    window = {"type": "tumbling", "size": "1m", "time_column": "user", "aggregates": {"n": "count(*)"}}
    project = load_project(write_project(tmp_path / "p", kafka_url, topic, streaming={"window": window}))
    produce(kafka_url, topic, range(20))
    with pytest.raises(TerminalError, match=r"window time_column 'user' holds no readable time .*name a timestamp"):
        run_stream(project, 1001, until=drained(20))


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
        ({"trigger": {}}, r"trigger needs interval"),
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
