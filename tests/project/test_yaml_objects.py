"""Streaming objects in sluice.yaml: the trigger's shorthand, keys a streaming object would ignore, and every
problem of a streaming object reported at once, each one line at its own line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sluice.errors import ValidationFailed
from sluice.project.load import load_project
from sluice.streaming.settings import TriggerSettings

HEAD = """
connections:
  events: kafka://127.0.0.1:1
  wh: sqlite:///wh.db
objects:
  - id: 1001
    name: tx
"""


def write(tmp_path: Path, body: str, more: str = "") -> Path:
    """sluice.yaml with object 1001 ``tx`` of ``body`` (its keys), then the objects of ``more`` (a list's items)."""
    path = tmp_path / "sluice.yaml"
    text = textwrap.dedent(HEAD).lstrip("\n") + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "    ")
    path.write_text(text + textwrap.indent(textwrap.dedent(more).lstrip("\n"), "  "))
    return path


def problems(tmp_path: Path, body: str, more: str = "") -> list[str]:
    path = write(tmp_path, body, more)
    with pytest.raises(ValidationFailed) as caught:
        load_project(path)
    found = [str(problem).removeprefix(f"{path}:") for problem in caught.value.problems]
    assert all("\n" not in problem for problem in found), found
    return found


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("10s", TriggerSettings(interval="10s")),
        ("500ms", TriggerSettings(interval="500ms")),
        ("1m", TriggerSettings(interval="1m")),
        ("10000", TriggerSettings(records=10000)),
        ("{interval: 2s, records: 50}", TriggerSettings(interval="2s", records=50)),
    ],
)
def test_the_trigger_is_a_duration_a_record_count_or_both(tmp_path: Path, trigger: str, expected: TriggerSettings) -> None:
    """Issue 13 writes ``streaming: {trigger: 10s}`` "or a record count"; it failed with "expected object, got str"."""
    path = write(tmp_path, f"source: {{type: kafka, connection: events, topic: t}}\nstreaming: {{trigger: {trigger}}}\n")
    streaming = load_project(path).objects[1001].streaming
    assert streaming is not None and streaming.trigger_settings == expected
    assert streaming.trigger_settings.interval_s == (None if expected.interval is None else expected.interval_s)


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("0s", "8: object 1001 (tx): streaming: trigger: '0s' must be above 0, e.g. 10s"),
        ("0", "8: object 1001 (tx): streaming: trigger: 0 is a record count below 1; write a count above 0"),
        ("soon", "8: object 1001 (tx): streaming: trigger: 'soon' is neither a duration (e.g. 500ms"),
        ("{interval: 0s}", "8: object 1001 (tx): streaming: trigger: interval: '0s' must be above 0, e.g. 10s"),
        ("{}", "8: object 1001 (tx): streaming: trigger: give interval (a duration), records (a count) or both"),
    ],
)
def test_a_wrong_trigger_is_said_once(tmp_path: Path, trigger: str, message: str) -> None:
    found = problems(tmp_path, f"source: {{type: kafka, connection: events, topic: t}}\nstreaming: {{trigger: {trigger}}}\n")
    assert len(found) == 1 and found[0].startswith(message), found
    assert "trigger: trigger" not in found[0]


KAFKA = "source: {type: kafka, connection: events, topic: t}\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(  # other sections said "did you mean"; streaming: did not
            KAFKA + "streaming: {triger: 10s}\n",
            [
                "8: object 1001 (tx): streaming: unknown option 'triger'. Did you mean 'trigger'? Known options: "
                "trigger, max_batch_records, max_batch_bytes, sql, window, compact"
            ],
            id="misspelt",
        ),
        pytest.param(  # a user's trial: `sluice validate` passed it and neither `sluice stream` nor `run` loaded it
            KAFKA + "streaming: {trigger: 1s}\ndestination: {connection: wh, table: tx, mode: replace}\n",
            [
                "9: object 1001 (tx): a streaming object writes to the lake only, its destination would never be "
                "loaded; move 'destination' to a batch child object that reads the stream ({id: ..., parents: "
                "[1001], sql: SELECT * FROM tx, destination: ...}, loaded by sluice run; docs/streaming.md)"
            ],
            id="destination",
        ),
        pytest.param(
            "source: {type: kafka, connection: events, topic: t, batch_size: 100}\nstreaming: {trigger: 1s}\n"
            "checks: [{not_null: {columns: [id]}}]\n",
            [
                "7: object 1001 (tx): source: batch_size is for a batch kafka source; a streaming object's "
                "micro-batches are bounded by streaming: max_batch_records and max_batch_bytes: drop it",
                "9: object 1001 (tx): a streaming object's output has no write to check; check a batch child",
            ],
            id="ignored-keys",
        ),
    ],
)
def test_a_streaming_object_mistake_is_one_line_at_its_line(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert problems(tmp_path, body) == expected


def test_the_child_the_refusal_names_is_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        source: {type: kafka, connection: events, topic: t}
        streaming: {trigger: 1s}
        """,
        """
        - id: 2001
          parents: [1001]
          sql: SELECT * FROM tx
          destination: {connection: wh, table: tx, mode: replace}
        """,
    )
    project = load_project(path)
    assert project.objects[2001].destination is not None and project.objects[1001].destination is None


def test_every_independent_problem_of_a_streaming_object_is_reported_at_once(tmp_path: Path) -> None:
    """A user's trial needed four passes of `sluice validate`, each showing the problems the last one hid."""
    found = problems(
        tmp_path,
        """
        source:
          type: kafka
          connection: wh
          topic: t
          schema: {x: int46}
          columns: [_offst]
          start: begining
        streaming:
          triger: 1s
          max_batch_records: -5
          trigger: {interval: 0s, records: 0}
          compact: {min_files: 1}
        """,
        """
        - id: 1002
          source: {type: kafka, connection: nowhere, topic: t}
          streaming: {max_batch_bytes: 10}
        """,
    )
    assert found == [
        "9: object 1001 (tx): connection 'wh' is sqlite://; a kafka source needs a kafka:// connection",
        "11: object 1001 (tx): kafka source: schema: column 'x': unknown column type 'int46'; use an Arrow type name "
        "such as string, int64, float64, bool, date32, timestamp[us], timestamp[ms, tz=UTC] or decimal(10,2)",
        "12: object 1001 (tx): kafka source: columns[0]: invalid enum value '_offst'. Did you mean '_offset'? "
        "Choose one of: _key, _headers, _timestamp, _partition, _offset, _topic",
        "13: object 1001 (tx): kafka source: start: invalid enum value 'begining'. Choose one of: earliest, latest",
        "15: object 1001 (tx): streaming: unknown option 'triger'. Did you mean 'trigger'? Known options: trigger, "
        "max_batch_records, max_batch_bytes, sql, window, compact",
        "16: object 1001 (tx): streaming: max_batch_records: expected int >= 1, got -5",
        "17: object 1001 (tx): streaming: trigger: records: expected int >= 1, got 0",
        "17: object 1001 (tx): streaming: trigger: interval: '0s' must be above 0, e.g. 10s",
        "18: object 1001 (tx): streaming: compact: min_files: expected int >= 2, got 1",
        "20: object 1002: unknown connection 'nowhere' in source (connections: events, wh).",
        "21: object 1002: streaming: max_batch_bytes: expected int >= 1024, got 10",
    ]


def test_a_time_zone_aware_declared_column_is_accepted_and_refused_on_spark_unless_utc(tmp_path: Path) -> None:
    body = """
        source: {type: kafka, connection: events, topic: t, schema: {ts: "timestamp[ms, tz=UTC]"}}
        streaming: {trigger: 1s}
        """
    load_project(write(tmp_path, body))
    load_project(write(tmp_path, "engine: spark\n" + textwrap.dedent(body).lstrip("\n")))
    found = problems(tmp_path, "engine: spark\n" + textwrap.dedent(body).lstrip("\n").replace("tz=UTC", "tz=Europe/Paris"))
    assert found == [
        "8: object 1001 (tx): source: schema: column 'ts' is in time zone Europe/Paris, but engine: spark writes "
        "time-zone-aware timestamps in UTC: declare it timestamp[<unit>, tz=UTC], or drop engine: spark to keep the "
        "zone on Sluice's micro-batcher"
    ]
