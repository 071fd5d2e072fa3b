"""Topic and consumer-group names: one definition in sluice.bus.names, which every user follows."""

from __future__ import annotations

import ast
import doctest
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import REGISTRY

import sluice
from sluice.bus import names
from sluice.bus.base import Bus
from sluice.observability import metrics
from sluice.server.lag import LagSampler

DEFINED = {
    names.EVENTS_TOPIC,
    names.DEAD_LETTER_TOPIC,
    names.READY_TOPIC_PREFIX,
    names.WORK_GROUP_PREFIX,
    names.COORDINATOR_GROUP_PREFIX,
    names.READER_GROUP,
}


def test_the_names_are_those_the_docs_give() -> None:
    assert (names.EVENTS_TOPIC, names.DEAD_LETTER_TOPIC) == ("sluice.events", "sluice.dead-letters")
    assert names.ready_topic("ingest") == "sluice.ready.ingest"
    assert (names.work_group("ingest"), names.coordinator_group("r1")) == ("workers.ingest", "coordinator.r1")
    assert names.is_run_group("coordinator.r1") and not names.is_run_group("workers.ingest")
    assert names.is_ready_topic("sluice.ready.x") and not names.is_ready_topic("sluice.events")


def test_the_module_examples_hold() -> None:
    result = doctest.testmod(names)
    assert result.attempted > 0 and result.failed == 0


def test_no_other_module_spells_a_name_out() -> None:
    """A string equal to a topic name or group prefix anywhere else in the package is a copy that could drift."""
    package = Path(sluice.__file__).parent
    copies = []
    for path in sorted(package.rglob("*.py")):
        if path == Path(names.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in DEFINED:
                copies.append(f"{path.relative_to(package)}:{node.lineno}: {node.value!r}")
    assert copies == []


def test_the_metrics_group_label_follows_the_coordinator_group_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    assert metrics.group_label(names.coordinator_group("r1")) == "coordinator"
    assert metrics.group_label(names.work_group("ingest")) == "workers.ingest"
    monkeypatch.setattr(names, "COORDINATOR_GROUP_PREFIX", "run.")  # a prefix copied into metrics would not follow
    assert metrics.group_label(names.coordinator_group("r1")) == "coordinator"
    assert metrics.group_label("coordinator.r1") == "coordinator.r1"


class _LagRecorder:
    """Just what LagSampler asks of a bus: the lag of a group on a topic, here always 3 on partition 0."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def lag_by_partition(self, group: str, topic: str) -> Mapping[int, int]:
        self.asked.append((group, topic))
        return {0: 3}


def test_the_lag_sampler_samples_the_groups_workers_and_coordinators_join(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names, "WORK_GROUP_PREFIX", "w.")
    monkeypatch.setattr(names, "COORDINATOR_GROUP_PREFIX", "c.")
    bus = _LagRecorder()
    sampler = LagSampler(cast(Bus, bus), ["ingest"], lambda: "r1")
    try:
        sampler.sample()
        assert bus.asked == [("w.ingest", "sluice.ready.ingest"), ("c.r1", "sluice.events")]
        labels = {"group": "coordinator", "topic": "sluice.events", "partition": "0"}
        assert REGISTRY.get_sample_value("sluice_bus_consumer_lag_messages", labels) == 3
    finally:
        for key in sampler._labels:
            metrics.BUS_CONSUMER_LAG.remove(*key)


def test_names_imports_nothing() -> None:
    """So the buses, metrics and events can all import it without a loop."""
    imported = [node for node in ast.walk(ast.parse(Path(names.__file__).read_text())) if isinstance(node, ast.ImportFrom)]
    assert [node.module for node in imported] == ["__future__"]
