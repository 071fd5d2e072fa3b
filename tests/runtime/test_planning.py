"""Planning against the lake: a streaming object the plan needs is fresh once it has committed a micro-batch; before
that ``plan_streams`` names it and ``plan_run`` (a run) refuses the plan."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from helpers import write_yaml
from sluice.errors import ConfigError
from sluice.lake.registry import open_lake
from sluice.project.load import load_project
from sluice.runtime.planning import Fingerprints, plan_run, plan_streams
from sluice.runtime.summary import RunOptions

PROJECT = """\
name: streams
connections:
  events: kafka://127.0.0.1:1
objects:
  - {id: 1001, name: events, source: {type: kafka, connection: events, topic: events}, streaming: {trigger: 1s}}
  - {id: 2001, name: totals, parents: [1001], sql: SELECT count(*) AS n FROM events}
"""


def test_a_streaming_object_without_a_commit_is_named_by_plan_streams_and_refused_by_plan_run(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, PROJECT)
    project = load_project(path)
    lake = open_lake(project)
    plan, unstreamed = plan_streams(project, RunOptions(), Fingerprints(project, lake))
    assert (plan.order, plan.to_run, plan.fresh, unstreamed) == ([1001, 2001], [1001, 2001], {}, [1001])
    message = (
        r"^streaming object 1001 \(events\) has committed no micro-batch yet, and the run reads it; start it first "
        rf"with: sluice stream {re.escape(str(path))} --object 1001$"
    )
    with pytest.raises(ConfigError, match=message):
        plan_run(project, RunOptions(), Fingerprints(project, lake))
    lake.append("raw", "events", pa.table({"id": [1, 2]}).to_reader(), commit={"batch": 1})
    plan, unstreamed = plan_streams(project, RunOptions(), Fingerprints(project, lake))
    assert (plan.to_run, sorted(plan.fresh), unstreamed) == ([2001], [1001], [])
    assert plan_run(project, RunOptions(), Fingerprints(project, lake)).fresh[1001].rows == 2
