"""The schedules: section of sluice.yaml, and objects' tags: and criticality:, read with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import write_yaml

from sluice.errors import ValidationFailed
from sluice.project.load import load_project, parse_project

OBJECTS = """
objects:
  - {id: 1001, name: orders_raw, tags: [ingest]}
  - {id: 1002, name: customers_raw, tags: [ingest, crm]}
  - {id: 2001, name: orders, parents: [1001], criticality: high}
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    _, problems = parse_project(write_yaml(tmp_path, text))
    return [f"{p.line}: {p.message}" for p in problems]


def test_schedules_targets_tags_and_defaults(tmp_path: Path) -> None:
    project = load_project(
        write_yaml(
            tmp_path,
            OBJECTS
            + """
schedules:
  ingest:
    cron: "0 2 * * *"
    timezone: Europe/Paris
    tags: [ingest]
    catch_up: all
  transform:
    cron: "0 3 * * *"
    targets: [orders, 1002]
    wait_for: [ingest]
    max_active_runs: 2
  everything:
    cron: "*/5 * * * *"
    enabled: false
""",
        )
    )
    by_name = {s.name: s for s in project.schedules}
    assert by_name["ingest"].targets == (1001, 1002) and by_name["ingest"].timezone == "Europe/Paris"
    assert by_name["ingest"].catch_up == "all" and by_name["ingest"].line == 8
    assert by_name["transform"].targets == (1002, 2001) and by_name["transform"].wait_for == ("ingest",)
    assert by_name["transform"].max_active_runs == 2 and by_name["transform"].catch_up == "latest"
    assert by_name["everything"].targets is None and not by_name["everything"].enabled
    assert project.objects[1002].tags == ("ingest", "crm")
    assert project.objects[2001].criticality == "high" and project.objects[1001].criticality is None


def test_each_problem_is_one_line_at_its_key(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        OBJECTS
        + """
schedules:
  a:
    cron: "0 25 * * *"
    timezone: Mars/Olympus
    targets: [nope]
  b:
    cron: "0 2 * * *"
    tags: [unknown]
    catch_up: sometimes
  d:
    crons: "0 2 * * *"
  e: {cron: "0 2 * * *", wait_for: [c]}
""",
    )
    text = "\n".join(found)
    assert "9: schedule 'a': '0 25 * * *' is not a cron expression" in text
    assert "10: schedule 'a': unknown time zone 'Mars/Olympus'" in text
    assert "11: schedule 'a': target 'nope' is not an object id or name" in text
    assert "15: schedule 'b': catch_up: invalid enum value 'sometimes'. Choose one of: none, latest, all" in text
    assert "17: schedule 'd': unknown key 'crons'. Did you mean 'cron'?" in text
    assert "18: schedule 'e': wait_for names 'c', not another schedule (schedules: a, b, d)" in text


def test_tags_selecting_nothing_and_wait_for_cycles_are_refused(tmp_path: Path) -> None:
    found = "\n".join(
        problems_of(
            tmp_path,
            OBJECTS
            + """
schedules:
  a: {cron: "0 2 * * *", tags: [nothing], wait_for: [b]}
  b: {cron: "0 3 * * *", wait_for: [a]}
""",
        )
    )
    assert "schedule 'a': no object carries any of the tags ['nothing']" in found
    assert "schedule 'a' waits for itself through wait_for" in found
    assert "schedule 'b' waits for itself through wait_for" in found


def test_criticality_must_be_low_or_high(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="criticality"):
        load_project(write_yaml(tmp_path, "objects:\n  - {id: 1001, criticality: urgent}\n"))


def test_a_schedule_name_yaml_reads_as_a_boolean_must_be_quoted(tmp_path: Path) -> None:
    found = problems_of(tmp_path, OBJECTS + "schedules:\n  off: {cron: '0 2 * * *'}\n")
    assert found == [
        "7: schedule name False is not text (YAML reads off, on, yes, no and numbers unquoted as such); "
        "quote the name as you wrote it, e.g. 'off':"
    ]


def test_a_cron_that_never_fires_is_refused_at_its_line(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        OBJECTS + "schedules:\n  leap: {cron: '0 0 29 2 *'}\n  never:\n    cron: '0 0 30 2 *'\n  april: {cron: '0 0 31 4,6 *'}\n",
    )
    assert found == [
        "9: schedule 'never': '0 0 30 2 *' never fires: no date has that day of the month in those months "
        "(e.g. 30 2 is February 30th); give a day every chosen month has, e.g. '0 0 28 2 *'",
        "10: schedule 'april': '0 0 31 4,6 *' never fires: no date has that day of the month in those months "
        "(e.g. 30 2 is February 30th); give a day every chosen month has, e.g. '0 0 28 2 *'",
    ]


def test_every_problem_of_the_section_is_reported_at_once_even_beside_a_wrong_key(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        OBJECTS
        + """
schedules:
  one:
    cron: "0 0 30 2 *"
    timezone: Mars/Olympus
    catchup: all
  two:
    cron: "0 25 * * *"
    max_active_runs: 0
    targets: [nope]
  three:
    cron: 5
    wait_for: [zzz, one]
  four: {cron: "0 2 * * *", enabled: maybe, tags: [x], wait_for: [three]}
""",
    )
    assert [line.split(":", 1)[0] + ":" + line.split(":", 2)[1] for line in found] == [
        "9: schedule 'one'",  # never fires
        "10: schedule 'one'",  # unknown time zone
        "11: schedule 'one'",  # unknown key
        "13: schedule 'two'",  # not a cron expression
        "14: schedule 'two'",  # max_active_runs
        "15: schedule 'two'",  # target
        "16: schedule 'three'",  # wait_for zzz (one and, for four, three are schedules even with a wrong key)
        "17: schedule 'three'",  # cron type
        "19: schedule 'four'",  # enabled
        "19: schedule 'four'",  # tags
    ]
    text = "\n".join(found)
    assert "9: schedule 'one': '0 0 30 2 *' never fires" in text and "10: schedule 'one': unknown time zone" in text
    assert "13: schedule 'two': '0 25 * * *' is not a cron expression" in text
    assert "15: schedule 'two': target 'nope' is not an object id or name" in text
    assert "16: schedule 'three': wait_for names 'zzz', not another schedule" in text
    assert "19: schedule 'four': no object carries any of the tags ['x']" in text
