"""Run ids: the time they carry is the clock Python reads, to the second. What a coordinator asks the bus before a run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers import load, seed_project
from sluice import events as ev
from sluice.runtime import coordinator
from sluice.runtime.coordinator import Coordinator, new_run_id
from sluice.runtime.run import RunOptions, open_backends


def test_a_run_id_made_just_after_a_second_begins_carries_that_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # time.strftime() without a time reads C's time(NULL), a coarse clock a few ms behind time.time(): at 06:02:00.0007
    # it still said 06:01:59 (a trial saw tick 06:02:00 -> run 20261201-060159-...).
    instant = time.mktime((2026, 12, 1, 6, 2, 0, 0, 0, -1)) + 0.0007
    monkeypatch.setattr(coordinator.time, "time", lambda: instant)
    assert new_run_id().startswith("20261201-060200-")
    assert new_run_id(instant + 3600).startswith("20261201-070200-")
    assert len({new_run_id() for _ in range(1000)}) == 1000


def test_the_topics_a_run_publishes_to_are_prepared_in_one_call_before_its_first_publish(tmp_path: Path) -> None:
    project = load(seed_project(tmp_path))
    calls: list[tuple[str, list[str]]] = []
    with open_backends(project) as backends:
        bus = backends.bus
        publish_many_nowait = bus.publish_many_nowait

        def prepare_topics(topics: Sequence[str]) -> None:
            calls.append(("prepare", list(topics)))

        def publishing(batches: Any, **options: Any) -> Any:
            calls.append(("publish", [topic for topic, messages in batches if messages]))
            return publish_many_nowait(batches, **options)

        bus.prepare_topics = prepare_topics  # type: ignore[method-assign]
        bus.publish_many_nowait = publishing  # type: ignore[method-assign]
        Coordinator(project, bus, backends.state, backends.lake, RunOptions()).start()
    stages = {obj.stage for obj in project.objects.values()}
    assert calls[0] == ("prepare", [ev.EVENTS_TOPIC, *sorted(ev.ready_topic(stage) for stage in stages)])
    assert [kind for kind, _ in calls].count("prepare") == 1
    published = {topic for kind, topics in calls if kind == "publish" for topic in topics}
    assert ev.ready_topic("ingest") in published and ev.EVENTS_TOPIC in published
